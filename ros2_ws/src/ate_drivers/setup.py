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
    # Python dependencies, so a colcon build outside the project venv resolves them (pip) or names them.
    install_requires=["setuptools", "numpy>=1.26", "pyyaml>=6", "ate_description"],
    extras_require={"robot": ["robotic-arm>=1.1", "python-can>=4.4", "pyserial>=3.5", "pyrealsense2>=2.55", "opencv-python-headless>=4.9,<5"]},
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
