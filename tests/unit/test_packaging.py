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
        assert folder.is_dir(), f"{package} is listed but {folder} is missing"
        has_code = (folder / "__init__.py").exists()
        has_data = any(p.suffix in {".sql", ".lua", ".yaml", ".jsonl"} for p in folder.iterdir())
        assert has_code or has_data, f"{package} is listed but holds neither code nor data"


def test_the_pytest_entry_point_module_is_a_top_level_module() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["pytest11"]["pilothouse"]
    # pytest marks a plugin distribution's top-level modules for assertion rewriting; without
    # one it would mark the folder `operator` (the standard library's) and warn on every run.
    assert entry in pyproject["tool"]["setuptools"]["py-modules"]
    assert (ROOT / f"{entry}.py").exists()
