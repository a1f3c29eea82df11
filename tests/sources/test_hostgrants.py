"""The --allowed-hosts file: clear errors at startup, reloads on change (a ConfigMap's symlink
swap included), and the last good grants kept when a new version is unusable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from authz.errors import ConfigError
from authz.policy.ownership import HostGrants
from authz.sources.hostgrants import MAX_GRANTS_BYTES, GrantsFile, load_grants


def mount(directory: Path, text: str, *, version: str) -> Path:
    """Write `text` the way the kubelet updates a mounted ConfigMap: a new timestamped directory,
    then one rename swapping the ..data symlink; the file itself is a symlink into ..data."""
    target = directory / f"..{version}"
    target.mkdir()
    (target / "hosts.yaml").write_text(text)
    swap = directory / "..data_tmp"
    swap.symlink_to(target.name)
    os.replace(swap, directory / "..data")
    link = directory / "hosts.yaml"
    if not link.is_symlink():
        link.symlink_to("..data/hosts.yaml")
    return link


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shop: [a.test\n", "not valid YAML (line 2)"),
        ("- shop\n", "expected a mapping of namespace to a list of host patterns"),
        ("shop: orders.example.com\n", "shop: expected a list of host patterns"),
        ("shop: ['*.*']\n", "shop[0]: '*.*' is not a host name"),
        ("shop: ['']\n", "shop[0]: an empty host pattern grants nothing"),
        ("Shop: [a.test]\n", "'Shop' is not a namespace name"),
        ("a: &x [b.test]\nb: *x\nc: *x\n" + "d: *x\n" * 200, "more than 100 aliases"),
        ("shop: [a.test]\n---\nteam: [b.test]\n", "not valid YAML"),
    ],
)
def test_an_unusable_file_is_a_config_error_naming_flag_file_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_grants(path)
    assert str(caught.value).startswith(f"--allowed-hosts {path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_non_utf8_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_grants(tmp_path / "gone.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("shop: [caf\u00e9.test]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_grants(latin)
    huge = tmp_path / "huge.yaml"
    huge.write_text("shop: [a.test]\n" + "#" * MAX_GRANTS_BYTES)
    with pytest.raises(ConfigError, match=f"larger than {MAX_GRANTS_BYTES} bytes"):
        load_grants(huge)


def test_an_empty_file_grants_nothing(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("# nobody may claim a host yet\n")
    assert load_grants(path).namespaces == {}


def test_a_configmap_symlink_swap_is_picked_up_and_a_bad_version_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    link = mount(tmp_path, "shop: [a.test]\n", version="2026_01_01_1")
    watched = GrantsFile(link)
    applied: list[HostGrants] = []
    first = watched.first()
    assert first.refused_hosts("shop", ["a.test"]) == []
    assert watched.load(applied.append) is None  # unchanged: nothing read, nothing applied

    mount(tmp_path, "shop: [a.test, b.test]\n", version="2026_01_01_2")
    swapped = watched.load(applied.append)
    assert swapped is not None
    assert swapped.refused_hosts("shop", ["b.test"]) == []
    assert applied == [swapped]

    caplog.set_level(logging.INFO)
    mount(tmp_path, "shop: [a.test\n", version="2026_01_01_3")
    assert watched.load(applied.append) is None
    assert watched.load(applied.append) is None
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # said once, not on every poll
    assert "not valid YAML" in errors[0]
    assert "the previous host grants stay in force" in errors[0]
    assert applied == [swapped]

    mount(tmp_path, "shop: [c.test]\n", version="2026_01_01_4")
    fixed = watched.load(applied.append)
    assert fixed is not None
    assert fixed.refused_hosts("shop", ["c.test", "a.test"]) == ["a.test"]
    assert applied == [swapped, fixed]


def test_a_file_that_becomes_readable_again_is_reread_without_a_content_change(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("shop: [a.test]\n")
    watched = GrantsFile(path)
    watched.first()
    applied: list[HostGrants] = []
    path.rename(tmp_path / "away.yaml")
    assert watched.load(applied.append) is None
    (tmp_path / "away.yaml").rename(path)  # same inode, size and mtime as before
    assert watched.load(applied.append) is not None
    assert len(applied) == 1
