"""Builds the check path as C extensions with mypyc; everything else in pyproject.toml.

The modules every check runs through (COMPILED) are compiled from their own typed source, so
they behave as the Python does - tests/test_compiled.py holds the two to the same answers - at
a fraction of the interpreter's cost. The build needs a C compiler and Python's headers; where
there is none, or with AUTHZ_COMPILE=0, the package installs as pure Python and works the
same, slower. authz/__init__.py falls back to the Python source when a compiled module is older
than its source (an edited checkout), so a stale build never answers checks.
"""

from __future__ import annotations

import os

from setuptools import setup

#: The check path: HTTP/2 and gRPC framing, the servicer, the decision's steps, the token cache.
COMPILED = [
    "authz/server/h2conn.py",
    "authz/server/h2control.py",
    "authz/server/h2decode.py",
    "authz/server/h2frames.py",
    "authz/server/h2limits.py",
    "authz/server/h2requests.py",
    "authz/server/h2streams.py",
    "authz/server/servicer.py",
    "authz/server/convert.py",
    "authz/server/observe.py",
    "authz/server/ids.py",
    "authz/pipeline/*.py",
    "authz/pipeline/steps/*.py",
    "authz/jwt/verify.py",
    "authz/jwt/extract.py",
]
#: Type-check the compiled modules as mypyc needs, without the project's lint configuration:
#: the build's isolated environment has neither the other packages nor their stubs.
MYPY_FLAGS = ["--config-file", "", "--ignore-missing-imports", "--python-version", "3.11"]


def _extensions() -> list[object]:
    if os.environ.get("AUTHZ_COMPILE", "1") == "0":
        return []
    from glob import glob

    from mypyc.build import mypycify

    paths = sorted(path for pattern in COMPILED for path in glob(pattern))
    extensions = mypycify([*MYPY_FLAGS, *paths], opt_level="3", group_name="authz")
    for extension in extensions:
        extension.optional = True  # no compiler: install the pure Python instead of failing
    return extensions


setup(ext_modules=_extensions())
