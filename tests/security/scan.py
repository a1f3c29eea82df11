"""Security scans `make lint` runs: bandit over authz/, checkov over the rendered chart and the Dockerfile.

    python -m tests.security.scan [--scanners DIR]

The chart is scanned as users install it, rendered by the real Helm engine for three value
sets (the defaults, a production-like set, standalone mode), not as template text. Every
finding must be fixed or listed in tests/security/baseline.yaml with the reason it is
accepted; a listed finding the scanners no longer report fails too, so the baseline only
shrinks with the code. The scanners run from their own venv (--scanners, .venv/scan by
default) and offline: checkov's platform lookups are off.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess  # nosec B404 - runs the scanners the Makefile installed
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("baseline.yaml")


@dataclass(frozen=True)
class Finding:
    tool: str
    check: str  # the scanner's id: B101, CKV_K8S_43
    where: str  # bandit: file; checkov: <value set>/<Kind.namespace.name> or Dockerfile
    title: str

    def describe(self) -> str:
        return f"{self.tool} {self.check} at {self.where}: {self.title}"


@dataclass(frozen=True)
class Accepted:
    tool: str
    check: str  # a glob over Finding.check
    where: str  # a glob over Finding.where
    reason: str

    def covers(self, finding: Finding) -> bool:
        return (
            self.tool == finding.tool
            and fnmatch.fnmatchcase(finding.check, self.check)
            and fnmatch.fnmatchcase(finding.where, self.where)
        )


def load_baseline(text: str) -> list[Accepted]:
    """The accepted findings; each entry needs tool, check, where and a reason."""
    entries = yaml.safe_load(text) or []
    accepted = []
    for number, entry in enumerate(entries, 1):
        missing = [k for k in ("tool", "check", "where", "reason") if not str(entry.get(k, ""))]
        if missing:
            raise ValueError(f"baseline entry {number}: set {', '.join(missing)}")
        accepted.append(Accepted(entry["tool"], entry["check"], entry["where"], entry["reason"]))
    return accepted


def compare(findings: Iterable[Finding], accepted: Sequence[Accepted]) -> list[str]:
    """Problems: findings no entry accepts, and entries that accept no finding (stale)."""
    findings = list(findings)
    problems = [
        f"new finding: {f.describe()} - fix it, or accept it in {BASELINE.name} with a reason"
        for f in findings
        if not any(a.covers(f) for a in accepted)
    ]
    problems += [
        f"stale baseline entry: {a.tool} {a.check} at {a.where} matches nothing - remove it"
        for a in accepted
        if not any(a.covers(f) for f in findings)
    ]
    return problems


def bandit_findings(report: Mapping[str, Any]) -> list[Finding]:
    return [
        Finding(
            "bandit",
            r["test_id"],
            str(Path(r["filename"]).resolve().relative_to(REPO)),
            r["issue_text"],
        )
        for r in report["results"]
    ]


def checkov_findings(reports: Any, *, label: str) -> list[Finding]:
    """checkov prints one report, or a list of them when several frameworks ran."""
    found = []
    for report in reports if isinstance(reports, list) else [reports]:
        for check in report.get("results", {}).get("failed_checks", []):
            where = (
                check["resource"]
                if report.get("check_type") == "kubernetes"
                else Path(check["file_path"]).name
            )
            found.append(
                Finding("checkov", check["check_id"], f"{label}/{where}", check["check_name"])
            )
    return found


def value_sets() -> dict[str, Mapping[str, Any]]:
    from tests.deploy.scenarios import ALL

    production = dict(ALL["everything"])
    production["envoy"] = {
        **production["envoy"],
        "image": {"digest": "sha256:" + "b" * 64},
    }
    return {"default": {}, "production": production, "standalone": ALL["standalone"]}


def render_chart(folder: Path) -> dict[str, Path]:
    from tests.deploy.chart import render

    files = {}
    for name, values in value_sets().items():
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(render(values).objects))
        files[name] = path
    return files


def run_json(command: Sequence[str]) -> Any:
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # nosec B603
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"{command[0]} failed (exit {done.returncode}):\n{done.stderr}") from None


def scan(scanners: Path) -> list[Finding]:
    bandit = [str(scanners / "bandit"), "-r", str(REPO / "authz"), "-x", str(REPO / "authz/_gen")]
    checkov = [str(scanners / "checkov"), "--quiet", "--compact", "-o", "json", "--skip-download"]
    os.environ["BC_SKIP_MAPPING"] = "TRUE"  # offline: no lookups on Prisma's platform
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            label: [*checkov, "--framework", "kubernetes", "-f", str(path)]
            for label, path in render_chart(Path(tmp)).items()
        }
        runs["image"] = [*checkov, "--framework", "dockerfile", "-f", str(REPO / "Dockerfile")]
        runs["bandit"] = [*bandit, "-f", "json", "-q"]
        # Each scanner spends most of its time starting up: run them side by side.
        with ThreadPoolExecutor(len(runs)) as pool:
            reports = dict(zip(runs, pool.map(run_json, runs.values()), strict=True))
    findings = bandit_findings(reports.pop("bandit"))
    for label, report in reports.items():
        findings += checkov_findings(report, label=label)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.scan", description=__doc__)
    parser.add_argument("--scanners", type=Path, default=REPO / ".venv" / "scan" / "bin")
    args = parser.parse_args(argv)
    findings = scan(args.scanners)
    problems = compare(findings, load_baseline(BASELINE.read_text()))
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"security scans: {len(findings)} findings, all accepted" if not problems else "")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
