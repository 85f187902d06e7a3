"""Every operator module says what it exports, and exports nothing by accident."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import pilothouse.operator as package


def _modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(package.__path__)]
    return [importlib.import_module(f"{package.__name__}.{n}") for n in sorted(names)]


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_all_lists_exactly_the_public_functions_and_classes(module: ModuleType) -> None:
    exported = set(getattr(module, "__all__", ()))
    defined = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    }

    assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
    assert exported <= set(vars(module)), f"listed but missing: {exported - set(vars(module))}"
    assert defined <= exported, f"public but not in __all__: {sorted(defined - exported)}"


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_every_module_says_why_it_exists(module: ModuleType) -> None:
    assert module.__doc__, module.__name__
    assert len(module.__doc__.split()) >= 10, module.__name__
