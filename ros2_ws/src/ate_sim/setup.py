from setuptools import find_packages, setup

package_name = "ate_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    # Python dependencies, so a colcon build outside the project venv resolves them (pip) or names them.
    install_requires=["setuptools", "numpy>=1.26", "mujoco>=3.1", "ate_description", "ate_drivers"],
    zip_safe=True,
    description="The simulated cell: a MuJoCo twin of the dual RM75-6s + OmniPicker + three cameras, behind the driver interfaces.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "sim_node = ate_sim.sim_node:main",
    ]},
)
