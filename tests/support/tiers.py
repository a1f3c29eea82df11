"""The fast tier's promise, kept where a real part starts, and its share of property examples.

tests/conftest.py deselects the integration tests under `make test-fast` by where they live and
which fixtures they use. A test that starts Envoy, Redis, the fake Kubernetes API server or the
authorization server without either would make the fast tier slow without anyone noticing; the
starters call `starting`, which fails such a test in the fast tier with the fix.

Property tests try fewer examples in the fast tier (`examples`): it is the signal while editing,
and `make test`, which CI runs, tries every one.
"""

from __future__ import annotations

from hypothesis import settings

_fast = False
#: The share of a property test's examples the fast tier tries, and the fewest it tries.
FAST_SHARE = 4
FAST_FLOOR = 25


def enter_fast_tier() -> None:
    global _fast
    _fast = True
    # Property tests that name no count of their own (hypothesis tries 100 by default).
    settings.register_profile("fast", max_examples=examples(100))
    settings.load_profile("fast")


def starting(part: str) -> None:
    """Called before `part` starts: refused in the fast tier."""
    if _fast:
        raise RuntimeError(
            f"this test starts {part}, which `make test-fast` leaves out: use one of the "
            "INTEGRATION_FIXTURES of tests/conftest.py, or put the test in one of its "
            "INTEGRATION_DIRS"
        )


def examples(thorough: int) -> int:
    """How many examples a property test tries: `thorough` in `make test`, fewer in the fast tier."""
    return max(thorough // FAST_SHARE, min(thorough, FAST_FLOOR)) if _fast else thorough
