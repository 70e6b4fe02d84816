"""What pyproject.toml cannot say: the Hydra configs live in configs/ at the repository root and ship inside the
wheel as the package `transformer.configs` (Hydra's pkg://transformer.configs), each group as a subpackage."""

from setuptools import find_namespace_packages, setup

CONFIGS = ["transformer.configs", *(f"transformer.configs.{group}" for group in find_namespace_packages("configs"))]

setup(
    packages=[*find_namespace_packages(include=["transformer*"]), *CONFIGS],
    package_dir={"transformer.configs": "configs"},
)
