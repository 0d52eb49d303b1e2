from setuptools import find_packages, setup

package_name = "ate_deploy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    # Python dependencies, so a colcon build outside the project venv resolves them (pip) or names them.
    install_requires=["setuptools", "numpy>=1.26", "ate_description", "ate_drivers", "ate-realman[train]"],
    zip_safe=True,
    description="The policy node: the ATE-fine-tuned pi0 driving both arms at 20 Hz through the ate_policy runtime.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "policy_node = ate_deploy.policy_node:main",
        "operator = ate_deploy.operator:main",
    ]},
)
