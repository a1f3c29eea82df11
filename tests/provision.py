"""Provide what the tests need beyond pip: programs from the system, and npm folders.

`make prereqs` runs this (with the system's Python, before .venv exists: standard library only):

    python3 tests/provision.py system [--check]   find the programs tests/versions.toml lists;
                                                  as root on Debian/Ubuntu apt-get installs the
                                                  missing ones, otherwise (or with --check) one
                                                  message names them with the install commands
                                                  for Debian/Ubuntu and macOS, and exits 1
    python3 tests/provision.py npm [FOLDER ...]   `npm ci` in every folder tests/versions.toml
                                                  lists (and each FOLDER), only when the folder's
                                                  package-lock.json changed since the last one
    python3 tests/provision.py constraints        the [pypi] pins as a pip constraints file
    python3 tests/provision.py scanners           the [scanners] pins as pip requirements
    python3 tests/provision.py run-requirements   what `make run` installs: the project's
                                                  dependencies and its `run` extra, less the
                                                  packages the demo never imports

Programs are looked up on PATH only, so a test can point the lookup at a PATH without them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "tests" / "versions.toml"
PYPROJECT = ROOT / "pyproject.toml"
#: Dependencies `make run` leaves out. The demo serves files; the Kubernetes client (and the tree
#: it pulls in) is the largest part of the runtime, and the sidecar imports it only when it is
#: asked to watch a cluster. `make prereqs` installs the project with all its dependencies.
NOT_IN_THE_DEMO = frozenset({"kubernetes"})
#: Written into node_modules after a successful `npm ci`: the lockfile's digest it installed.
NPM_STAMP = ".provisioned-lock-sha256"


@dataclass(frozen=True)
class Program:
    command: str
    debian: str
    brew: str
    purpose: str


#: Every program [system] in tests/versions.toml may name, and where it comes from.
PROGRAMS = {
    p.command: p
    for p in (
        Program("redis-server", "redis-server", "redis", "Redis, for the rate-limit tests"),
        Program("redis-cli", "redis-tools", "redis", "builds the tests' Redis Cluster"),
        Program("wrk", "wrk", "wrk", "the HTTP load generator tests/bench drives"),
        Program("node", "nodejs", "node", "Node.js, runs the tests' OAuth 2.0 provider"),
        Program("npm", "npm", "node", "installs the npm folders of tests/versions.toml"),
        Program(
            "gcc", "gcc", "gcc", "compiles the check path when the package installs (setup.py)"
        ),
    )
}


class ProvisionError(Exception):
    """What is missing, worded for the person who has to fix it."""


def pins(path: Path = VERSIONS) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


def _numbers(text: str) -> tuple[int, ...] | None:
    found = re.search(r"\d+(?:\.\d+)+", text)
    return tuple(int(n) for n in found.group(0).split(".")) if found else None


def installed_version(command: str) -> str | None:
    """The version a program on PATH reports (`--version`), or None when it is not on PATH."""
    binary = shutil.which(command)
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    numbers = _numbers(done.stdout + done.stderr)
    return ".".join(map(str, numbers)) if numbers else "unknown"


@dataclass(frozen=True)
class Problem:
    program: Program
    found: str | None  # None: not on PATH
    wanted: str

    def describe(self) -> str:
        state = (
            "not installed" if self.found is None else f"{self.found} is older than {self.wanted}"
        )
        return f"  {self.program.command:<13} {state:<30} {self.program.purpose}"


def problems(wanted: Mapping[str, object]) -> list[Problem]:
    """The programs that are missing or older than tests/versions.toml accepts."""
    found = []
    for command, minimum in wanted.items():
        if command not in PROGRAMS:
            raise ProvisionError(f"tests/versions.toml: [system] names {command!r}, unknown here")
        version = installed_version(command)
        have, need = _numbers(version or ""), _numbers(str(minimum))
        if version is None or (have is not None and need is not None and have < need):
            found.append(Problem(PROGRAMS[command], version, str(minimum)))
    return found


def message(missing: Sequence[Problem]) -> str:
    debian = sorted({p.program.debian for p in missing})
    brew = sorted({p.program.brew for p in missing})
    return "\n".join(
        [
            "The tests need programs that are missing or too old:",
            *(p.describe() for p in missing),
            "Install them, then run make again:",
            f"  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y {' '.join(debian)}",
            f"  macOS:          brew install {' '.join(brew)}",
            "(The oldest versions accepted are in tests/versions.toml.)",
            *(
                ["A distribution's own package can be older: the program's site offers newer ones."]
                if any(p.found is not None for p in missing)
                else []
            ),
        ]
    )


def apt_install(packages: Sequence[str]) -> bool:
    """Install Debian packages non-interactively; False when this is not a root Debian/Ubuntu."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return False
    print(f"provision: apt-get install {' '.join(packages)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-qq"], check=True, env=env)
    subprocess.run(
        [apt, "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env
    )
    return True


def provide_system(*, check_only: bool) -> None:
    wanted = pins().get("system", {})
    missing = problems(wanted)
    if missing and not check_only:
        packages = sorted({p.program.debian for p in missing})
        try:
            installed = apt_install(packages)
        except subprocess.CalledProcessError as exc:
            raise ProvisionError(f"apt-get failed ({exc})\n{message(missing)}") from exc
        if installed:
            missing = problems(wanted)
    if missing:
        raise ProvisionError(message(missing))


def lock_digest(folder: Path) -> str:
    lock = folder / "package-lock.json"
    if not lock.is_file():
        raise ProvisionError(
            f"{folder}: no package-lock.json (an npm folder is installed with `npm ci`, "
            "which needs the lockfile: run `npm install` there once and commit it)"
        )
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def provide_npm(folders: Sequence[Path]) -> list[Path]:
    """`npm ci` in each folder whose lockfile is not the one last installed; returns those."""
    installed = []
    for folder in folders:
        digest = lock_digest(folder)
        stamp = folder / "node_modules" / NPM_STAMP
        if stamp.is_file() and stamp.read_text().strip() == digest:
            continue
        npm = shutil.which("npm")
        if npm is None:
            raise ProvisionError(message(problems({"npm": pins()["system"]["npm"]})))
        print(f"provision: npm ci in {folder}", flush=True)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=False
        )
        if done.returncode != 0:
            raise ProvisionError(f"{folder}: `npm ci` failed (exit {done.returncode}), see above")
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest + "\n")
        installed.append(folder)
    return installed


def npm_folders() -> list[Path]:
    listed = pins().get("npm", {}).get("folders", [])
    assert isinstance(listed, list)
    return [ROOT / str(folder) for folder in listed]


def locked_packages(folder: Path) -> dict[str, str]:
    """The direct dependencies of an npm folder and the versions its lockfile pins."""
    lock = json.loads((folder / "package-lock.json").read_text())
    packages = lock.get("packages", {})
    found = {}
    for name in sorted(packages.get("", {}).get("dependencies", {})):
        entry = packages.get(f"node_modules/{name}", {})
        if entry.get("link"):  # a folder of the project: its version is under its own path
            entry = packages.get(entry.get("resolved", ""), {})
        found[name] = str(entry.get("version", "?"))
    return found


def requirements(section: str) -> str:
    """One section's pins as `name==version` lines, for pip's -c or -r."""
    return "".join(f"{name}=={version}\n" for name, version in pins().get(section, {}).items())


def project_name(requirement: str) -> str:
    """A requirement's project name, normalized as PyPI compares them (PEP 503)."""
    found = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    if found is None:
        raise ProvisionError(f"pyproject.toml: not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def run_requirements(path: Path = PYPROJECT) -> str:
    """The project's dependencies and its `run` extra, less NOT_IN_THE_DEMO, for pip's -r."""
    with path.open("rb") as file:
        project = tomllib.load(file)["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["run"]]
    return "".join(f"{r}\n" for r in wanted if project_name(r) not in NOT_IN_THE_DEMO)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/provision.py", description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    system = steps.add_parser("system", help="programs from the operating system")
    system.add_argument("--check", action="store_true", help="report only, never install")
    npm = steps.add_parser("npm", help="npm ci in the npm folders")
    npm.add_argument("folders", nargs="*", type=Path, help="more folders with a package-lock.json")
    steps.add_parser("constraints", help="print the [pypi] pins for pip -c")
    steps.add_parser("scanners", help="print the [scanners] pins for pip -r")
    steps.add_parser("run-requirements", help="print what `make run` installs, for pip -r")
    args = parser.parse_args(argv)
    try:
        if args.step == "system":
            provide_system(check_only=args.check)
        elif args.step == "npm":
            provide_npm([*npm_folders(), *args.folders])
        elif args.step == "run-requirements":
            sys.stdout.write(run_requirements())
        else:
            sys.stdout.write(requirements("pypi" if args.step == "constraints" else "scanners"))
    except ProvisionError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
