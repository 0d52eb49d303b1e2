from setuptools import find_packages, setup

package_name = "ate_teleop"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    # Python dependencies, so a colcon build outside the project venv resolves them (pip) or names them.
    install_requires=["setuptools", "numpy>=1.26", "ate_description", "ate_drivers", "ate-realman[robot,train]"],
    zip_safe=True,
    description="The dual-operator teleop node: Vision Pro + Joy-Con per arm, IK, episode recording.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "teleop_node = ate_teleop.teleop_node:main",
    ]},
)
