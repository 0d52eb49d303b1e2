from glob import glob

from setuptools import find_packages, setup

package_name = "ate_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.json") + glob("config/*.rviz")),
        (f"share/{package_name}/config/tasks", glob("config/tasks/*.yaml")),
    ],
    # Python dependencies, so a colcon build outside the project venv resolves them (pip) or names them.
    install_requires=["setuptools", "ate_description", "ate_drivers", "ate_sim", "ate_deploy", "ate_teleop"],
    zip_safe=True,
    description="Launch files, configuration and graph descriptions of the dual-arm RealMan ATE stack.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "description_node = ate_bringup.description_node:main",
    ]},
)
