"""Packaging: every package folder is listed for wheels, and the public surface is deliberate."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed_packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(pyproject["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_listed_in_pyproject() -> None:
    found = set()
    for top, package in (("runtime", "pilothouse.runtime"), ("operator", "pilothouse.operator")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join((package, *rel.parts)) if rel.parts else package)
    missing = found - _listed_packages()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_listed_packages_exist() -> None:
    for package in _listed_packages():
        parts = package.split(".")[1:]
        folder = ROOT.joinpath(*parts)
        assert (folder / "__init__.py").exists(), f"{package} is listed but {folder} is missing"
