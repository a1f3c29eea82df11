"""The container image, checked without a Docker engine: hadolint, the Dockerfile's shape, the build
context, and the wheel the image installs (built here with the Dockerfile's own command).
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy import dockerfile
from tests.deploy.chart import CRD_FILE, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
STAGES = dockerfile.parse(DOCKERFILE.read_text())
BUILD, FINAL = STAGES[0], STAGES[-1]
IGNORE = dockerfile.DockerIgnore.parse((REPO_ROOT / ".dockerignore").read_text())
CRD_IN_PACKAGE = "authz/policy/crd/authz.dev_authpolicies.yaml"
HADOLINT = str(Path(sys.executable).with_name("hadolint"))


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_make_lint_runs_hadolint() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    lint_recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/hadolint Dockerfile" in lint_recipe


def test_multi_stage_on_one_pinned_slim_python() -> None:
    assert len(STAGES) == 2
    assert BUILD.name == "build"
    for stage in STAGES:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", stage.base), stage.base
    # The virtual environment copied across stages runs on the base image's interpreter.
    assert BUILD.base == FINAL.base


def test_final_stage_holds_the_runtime_environment_only() -> None:
    copies = FINAL.all("COPY")
    assert copies == ["--from=build /opt/authz /opt/authz"]
    runs = FINAL.all("RUN")
    assert runs == ["python -m pip uninstall --yes pip setuptools wheel"]
    assert not FINAL.all("ADD")
    final_text = " ".join(i.value for i in FINAL.instructions)
    for tool in ("apt-get", "apk ", "pip install", "gcc", "build-essential"):
        assert tool not in final_text
    env = " ".join(FINAL.all("ENV"))
    assert "PATH=/opt/authz/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_runs_as_a_numeric_non_root_user_with_the_authz_entrypoint() -> None:
    (user,) = FINAL.all("USER")
    uid, gid = user.split(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) > 0
    assert int(gid) > 0
    keywords = [i.keyword for i in FINAL.instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert json.loads(FINAL.all("ENTRYPOINT")[0]) == ["authz"]
    assert json.loads(FINAL.all("CMD")[0]) == ["serve"]


def test_build_stage_leaves_no_pip_cache_and_compiles_nothing() -> None:
    assert "PIP_NO_CACHE_DIR=1" in " ".join(BUILD.all("ENV"))
    install = next(
        r for r in BUILD.all("RUN") if r.startswith("python -m venv") and " install " in r
    )
    assert "--only-binary=:all:" in install


def test_build_context_is_the_package_sources_only() -> None:
    files = dockerfile.context_files(REPO_ROOT, IGNORE)
    assert {"pyproject.toml", "authz/__init__.py", "authz/cli.py", CRD_IN_PACKAGE} <= set(files)
    assert "deploy/crds/authz.dev_authpolicies.yaml" in files
    for rel in files:
        top = rel.split("/")[0]
        assert top in {"pyproject.toml", "setup.py", "README.md", "authz", "deploy"}, rel
        assert "__pycache__" not in rel
        assert not rel.endswith(".pyc")
        if top == "deploy":
            assert rel.startswith("deploy/crds/"), rel


def _pip_wheel_argv() -> list[str]:
    (command,) = [r for r in BUILD.all("RUN") if r.startswith("pip wheel")]
    return shlex.split(command)


def _build_wheel(source: Path, out: Path) -> Path:
    """Run the Dockerfile's `pip wheel` command in `source`, writing to `out`."""
    argv = _pip_wheel_argv()
    out_index = argv.index("-w") + 1
    argv[out_index] = str(out)
    subprocess.run(
        [sys.executable, "-m", *argv[0:1], *argv[1:]],
        cwd=source,
        # The wheels are compared file by file: compiled modules carry their build folder, so
        # both are built as Python (tests/test_compiled.py holds the compiled twin to it).
        env={**os.environ, "AUTHZ_COMPILE": "0"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("authz-*.whl")
    return wheel


def _copy_work_tree(destination: Path) -> None:
    """The files git knows or would add (tracked, plus untracked not ignored), links kept."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO_ROOT / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet in the index
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)


def _record(wheel: Path) -> set[tuple[str, str]]:
    with zipfile.ZipFile(wheel) as zf:
        rows = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD")))
    return {tuple(line.split(",")[:2]) for line in rows.decode().splitlines() if line}  # type: ignore[misc]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel the image build makes, the wheel `pip wheel .` makes from the work tree)."""
    root = tmp_path_factory.mktemp("image")
    image_root = root / "image"
    workdir = dockerfile.copy_into(
        BUILD,
        context=REPO_ROOT,
        files=dockerfile.context_files(REPO_ROOT, IGNORE),
        image_root=image_root,
    )
    tree = root / "tree"
    _copy_work_tree(tree)
    # Side by side: each build spends most of its time setting up its isolated environment.
    with ThreadPoolExecutor(2) as pool:
        in_image = pool.submit(_build_wheel, workdir, root / "image-wheels")
        from_tree = pool.submit(_build_wheel, tree, root / "tree-wheels")
        return in_image.result(), from_tree.result()


def test_build_stage_runs_pip_wheel_and_installs_that_wheel() -> None:
    argv = _pip_wheel_argv()
    assert argv[:2] == ["pip", "wheel"]
    assert sorted(argv[2:]) == sorted([".", "--no-deps", "-w", argv[argv.index("-w") + 1]])
    wheel_dir = argv[argv.index("-w") + 1]
    keywords = [(i.keyword, i.value) for i in BUILD.instructions]
    build_at = keywords.index(("RUN", " ".join(argv)))
    installs = [v for k, v in keywords[build_at + 1 :] if k == "RUN" and " install " in v]
    assert len(installs) == 1
    assert f"{wheel_dir}/authz-*.whl" in shlex.split(installs[0])
    # It installs into the environment the final stage copies.
    assert "--python /opt/authz/bin/python" in installs[0]


def test_image_wheel_is_the_pip_wheel_of_the_work_tree(wheels: tuple[Path, Path]) -> None:
    in_image, from_tree = wheels
    assert in_image.name == from_tree.name
    assert _record(in_image) == _record(from_tree)


def test_wheel_carries_the_package_the_crd_and_the_console_script(
    wheels: tuple[Path, Path],
) -> None:
    in_image, _ = wheels
    with zipfile.ZipFile(in_image) as zf:
        names = set(zf.namelist())
        assert {"authz/__init__.py", "authz/cli.py", "authz/py.typed"} <= names
        assert not [n for n in names if n.startswith("tests/")]
        # The CRD is a link in the source tree; in the wheel it must be the file itself.
        info = zf.getinfo(CRD_IN_PACKAGE)
        mode = info.external_attr >> 16
        assert not stat.S_ISLNK(mode)
        assert mode == 0 or stat.S_ISREG(mode)
        crd = zf.read(CRD_IN_PACKAGE)
        assert hashlib.sha256(crd).digest() == hashlib.sha256(CRD_FILE.read_bytes()).digest()
        entry_points = configparser.ConfigParser()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points.read_string(zf.read(f"{dist_info}/entry_points.txt").decode())
        assert entry_points["console_scripts"]["authz"] == "authz.cli:main"
        cli = ast.parse(zf.read("authz/cli.py"))
    assert "main" in {n.name for n in cli.body if isinstance(n, ast.FunctionDef)}
