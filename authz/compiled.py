"""Whether the check path runs compiled (setup.py builds it with mypyc) or as Python source.

The compiled modules sit beside their source. Python would load a compiled module before its
source even when the source is newer - an edited checkout - and answer checks with the old
code; so in a source checkout (setup.py beside the package) any module older than its source
turns the whole package back to source, and AUTHZ_PURE_PYTHON=1 does the same on purpose (the
tests compare the two). An installed wheel is never second-guessed: its files carry install
times, not build times.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)

PACKAGE = os.path.dirname(os.path.abspath(__file__))
PURE_ENV = "AUTHZ_PURE_PYTHON"


def _compiled_pairs() -> list[tuple[str, str]]:
    """(compiled file, its source) for every compiled module of the package."""
    pairs = []
    for folder, _dirs, files in os.walk(PACKAGE):
        for name in files:
            suffix = next((s for s in EXTENSION_SUFFIXES if name.endswith(s)), None)
            if suffix is not None:
                pairs.append(
                    (os.path.join(folder, name), os.path.join(folder, name[: -len(suffix)] + ".py"))
                )
    return pairs


def _stale(pairs: list[tuple[str, str]]) -> list[str]:
    if not os.path.exists(os.path.join(os.path.dirname(PACKAGE), "setup.py")):
        return []
    return [
        source
        for compiled, source in pairs
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(compiled)
    ]


def _use_source() -> None:
    """Make every folder of the package import from source: a finder without extensions."""
    loaders = ((SourceFileLoader, SOURCE_SUFFIXES), (SourcelessFileLoader, BYTECODE_SUFFIXES))
    for folder, dirs, _files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        sys.path_importer_cache[folder] = FileFinder(folder, *loaders)


def _choose() -> tuple[bool, str]:
    pairs = _compiled_pairs()
    if not pairs:
        return False, "pure Python (not compiled: no C compiler at install, or AUTHZ_COMPILE=0)"
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        _use_source()
        return False, f"pure Python ({PURE_ENV} is set)"
    if stale := _stale(pairs):
        _use_source()
        return False, (
            f"pure Python: {os.path.relpath(stale[0], os.path.dirname(PACKAGE))} changed after "
            "the check path was compiled (reinstall, e.g. `make prereqs`, to compile it again)"
        )
    return True, "compiled (mypyc)"


def stale() -> list[str]:
    """The sources edited since the check path was compiled (none when it was not compiled)."""
    return _stale(_compiled_pairs())


#: Whether the check path's modules load compiled, and why (logged when the service starts).
COMPILED, MODE = _choose()
