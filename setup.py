"""Packages, and the cost profiles shipped inside the wheel as ``workers/_bundled_profiles``.

``configs/profiles/`` stays the one editable copy: a wheel carries it as package
data (``workers.profiles`` falls back to it when there is no checkout beside the
package), an editable install maps the same directory.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["workers*", "storage*", "sweep*"]), "workers._bundled_profiles"],
    package_dir={"workers._bundled_profiles": "configs/profiles"},
)
