"""The fast tier's promise, kept where a real part starts.

tests/conftest.py deselects the integration tests under `make test-fast` by where they live and
which fixtures they use. A test that starts Envoy, Redis or the fake Kubernetes API server without
either would make the fast tier slow without anyone noticing; the starters call `starting`, which
fails such a test in the fast tier with the fix.
"""

from __future__ import annotations

_fast = False


def enter_fast_tier() -> None:
    global _fast
    _fast = True


def starting(part: str) -> None:
    """Called before `part` starts: refused in the fast tier."""
    if _fast:
        raise RuntimeError(
            f"this test starts {part}, which `make test-fast` leaves out: use one of the "
            "INTEGRATION_FIXTURES of tests/conftest.py, or put the test in one of its "
            "INTEGRATION_DIRS"
        )
