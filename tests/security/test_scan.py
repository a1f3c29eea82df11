"""The baseline logic of the security scans: what it lets through and what it fails on."""

from __future__ import annotations

import pytest

from tests.security.scan import BASELINE, Finding, compare, load_baseline

ASSERT = Finding("bandit", "B101", "authz/app.py", "Use of assert detected")
DIGEST = Finding("checkov", "CKV_K8S_43", "default/Deployment.edge.gw-authz", "Image digest")


def test_a_listed_finding_passes_and_an_unlisted_one_is_named_with_the_fix() -> None:
    accepted = load_baseline(
        "- {tool: bandit, check: B101, where: 'authz/*', reason: narrowing}\n"
        "- {tool: checkov, check: 'CKV_K8S_4*', where: 'default/*', reason: no digest yet}\n"
    )
    assert compare([ASSERT, DIGEST], accepted) == []
    other = Finding("checkov", "CKV_K8S_43", "production/Deployment.edge.gw-authz", "digest")
    [problem] = compare([ASSERT, DIGEST, other], accepted)
    assert "new finding: checkov CKV_K8S_43 at production/" in problem
    assert "accept it in baseline.yaml with a reason" in problem


def test_an_entry_that_matches_nothing_is_stale() -> None:
    accepted = load_baseline("- {tool: bandit, check: B101, where: 'authz/*', reason: why}\n")
    [problem] = compare([], accepted)
    assert problem.startswith("stale baseline entry: bandit B101 at authz/*")


@pytest.mark.parametrize("missing", ["tool", "check", "where", "reason"])
def test_every_entry_says_why(missing: str) -> None:
    entry = {"tool": "bandit", "check": "B101", "where": "authz/*", "reason": "why"}
    entry[missing] = ""
    text = "- {" + ", ".join(f"{k}: '{v}'" for k, v in entry.items()) + "}\n"
    with pytest.raises(ValueError, match=f"set {missing}"):
        load_baseline(text)


def test_the_shipped_baseline_is_well_formed() -> None:
    accepted = load_baseline(BASELINE.read_text())
    assert accepted
    assert all(len(a.reason) > 20 for a in accepted)
