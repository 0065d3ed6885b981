"""The optional compiled parsers: one C extension module per ``ingest/native/NAME.c``, ``_c_NAME``.

``load(NAME)`` gives the module, or None when it was not built (no C compiler where ksmtrace was installed) or
is switched off: ``KSMTRACE_NATIVE=0`` in the environment, or ``use(False)`` in a process (the tests run both
paths). Every caller keeps its pure Python path and gives the same rows either way; the compiled code only takes
the lines it is sure of and hands every other line to the Python rules.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

_enabled = os.environ.get("KSMTRACE_NATIVE", "1").strip().lower() not in ("0", "no", "false", "off")
_cache: dict[str, ModuleType | None] = {}


def load(name: str) -> ModuleType | None:
    """The compiled module ``ksmtrace.ingest._c_NAME``, or None (not built, or switched off)."""
    if not _enabled:
        return None
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"ksmtrace.ingest._c_{name}")
        except ImportError:
            _cache[name] = None
    return _cache[name]


def use(on: bool) -> bool:
    """Switch the compiled parsers on or off in this process; returns the previous setting."""
    global _enabled
    prev, _enabled = _enabled, bool(on)
    return prev


def built() -> list[str]:
    """The names of the compiled modules this install has (whether or not switched off)."""
    import pkgutil

    return sorted(m.name[3:] for m in pkgutil.iter_modules([os.path.dirname(__file__)]) if m.name.startswith("_c_"))


def enabled() -> bool:
    return _enabled
