from glob import glob

from setuptools import find_packages, setup

package_name = "ate_description"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/urdf", glob("urdf/*.urdf")),
    ],
    # The bottom layer stays light: a robot PC without torch or ROS can import it. Pinocchio is optional
    # (the `pinocchio` extra), imported only when a Pinocchio model or IK is asked for.
    install_requires=["setuptools", "numpy>=1.26", "pyyaml>=6", "draccus>=0.10"],
    extras_require={"pinocchio": ["pin>=3.0"]},
    zip_safe=True,
    description="The dual RM75-6s cell's robot description: URDF, kinematics, data contract, limits, calibration "
                "schema, config loader.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "generate_urdf = ate_description.urdf:main",
    ]},
)
