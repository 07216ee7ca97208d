"""The Redis scripts' sources: each side keeps its Lua beside its code, in ``<package>/lua/``."""

from __future__ import annotations

from importlib import resources

_scripts: dict[tuple[str, str], str] = {}


def script_source(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``, read once per process."""
    if (package, name) not in _scripts:
        _scripts[package, name] = (resources.files(package) / "lua" / f"{name}.lua").read_text()
    return _scripts[package, name]
