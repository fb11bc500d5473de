"""Every package's facade exports a sorted ``__all__`` whose names all exist (STYLE.md §2)."""

import importlib
import pkgutil

import pytest

import courtyard

PACKAGES = sorted(
    info.name for info in pkgutil.iter_modules(courtyard.__path__, "courtyard.") if info.ispkg
)


def _isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions, each alphabetical (ruff RUF022's order)."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_facade_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported, key=_isort_style), f"{name}.__all__ unsorted"
    for member in exported:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


def test_implementation_modules_are_private() -> None:
    public_modules = {"api", "__main__", "testing"}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            assert info.name.startswith("_") or info.name in public_modules, (
                f"{package}.{info.name} should be private (_{info.name}) or part of the facade"
            )
