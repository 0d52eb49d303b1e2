from setuptools import find_packages, setup

package_name = "ate_drivers"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    description="Drivers of the RealMan arms, OmniPicker grippers and RealSense cameras: backends, safety, emulators, thin ROS nodes.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "arm_node = ate_drivers.nodes.arm_node:main",
        "gripper_node = ate_drivers.nodes.gripper_node:main",
        "camera_node = ate_drivers.nodes.camera_node:main",
        "estop_node = ate_drivers.nodes.estop_node:main",
        "realman_emulator = ate_drivers.arm.realman_emulator:main",
        "omnipicker_emulator = ate_drivers.gripper.omnipicker_emulator:main",
    ]},
)
