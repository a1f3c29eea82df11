"""FileSource: reread and recompile only when a file changed; report state changes once."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from authz.jwt.providers import offline_provider
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.sources.files import SOURCE_NAME, FileSource, report
from tests.support.policies import auth_policy, write_policies


class Recorder:
    """The update callback: records each call, then compiles through a real store."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.documents: list[Sequence[SourceDocument]] = []
        self.store = PolicyStore(bind=offline_provider, publish=lambda _s: None)

    def __call__(self, source: str, documents: Sequence[SourceDocument]) -> Snapshot:
        self.calls.append((source, [d.location for d in documents]))
        self.documents.append(documents)
        return self.store.update(source, documents)


def write(path: Path, name: str) -> None:
    write_policies(path, auth_policy(name, namespace=None, hosts=[f"{name}.example.com"]))


def bump_mtime(path: Path) -> None:
    """Make a rewrite visible even on filesystems with coarse timestamps."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_load_only_reloads_on_change(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "a")
    recorder = Recorder()
    source = FileSource((tmp_path,), update=recorder)
    first = source.load()
    assert first is not None
    assert first.lookup("a.example.com") is not None
    assert recorder.calls == [(SOURCE_NAME, [f"{tmp_path / 'a.yaml'}:0"])]
    assert source.load() is None  # nothing changed: nothing read, nothing compiled
    assert len(recorder.calls) == 1

    write(tmp_path / "a.yaml", "renamed")  # content changed (size and mtime)
    bump_mtime(tmp_path / "a.yaml")
    changed = source.load()
    assert changed is not None
    assert changed.lookup("renamed.example.com") is not None
    assert changed.lookup("a.example.com") is None
    assert len(recorder.calls) == 2

    write(tmp_path / "b.yaml", "b")  # a file added
    assert source.load() is not None
    assert len(recorder.calls) == 3
    assert source.load() is None

    (tmp_path / "a.yaml").unlink()  # a file removed
    removed = source.load()
    assert removed is not None
    assert removed.lookup("renamed.example.com") is None
    assert removed.lookup("b.example.com") is not None
    assert len(recorder.calls) == 4


def test_only_changed_files_are_read_again(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.yaml", name)
    recorder = Recorder()
    source = FileSource((tmp_path,), update=recorder)
    assert source.load() is not None
    write(tmp_path / "b.yaml", "bee")
    bump_mtime(tmp_path / "b.yaml")
    snapshot = source.load()
    assert snapshot is not None
    assert snapshot.lookup("bee.example.com") is not None
    before, after = recorder.documents
    # a.yaml and c.yaml were not parsed again: the very same documents were handed over.
    assert after[0] is before[0]
    assert after[2] is before[2]
    assert after[1] is not before[1]
    assert after[1].body is not None
    assert after[1].body["metadata"]["name"] == "bee"


def test_same_size_rewrite_is_seen_through_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    write(path, "aaa")
    recorder = Recorder()
    source = FileSource((path,), update=recorder)
    source.load()
    write(path, "bbb")
    bump_mtime(path)
    snapshot = source.load()
    assert snapshot is not None
    assert snapshot.lookup("bbb.example.com") is not None


def test_a_failed_update_is_retried_on_the_next_load(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "a")
    attempts: list[str] = []
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)

    def flaky(source: str, documents: Sequence[SourceDocument]) -> Snapshot:
        attempts.append(source)
        if len(attempts) == 1:
            raise RuntimeError("store unavailable")
        return store.update(source, documents)

    source = FileSource((tmp_path,), update=flaky)
    with pytest.raises(RuntimeError):
        source.load()
    assert source.load() is not None  # not mistaken for "unchanged"
    assert len(attempts) == 2


def test_report_logs_each_state_change_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    good = SourceDocument("a.yaml:0", {**_doc("a")})
    first = store.update("files", [good])
    with caplog.at_level(logging.INFO, logger="authz.sources.files"):
        report(first, previous=None)
        report(store.update("files", [good]), previous=first)  # unchanged: silent
    assert [r.getMessage() for r in caplog.records] == ["policy default/a (a.yaml:0) accepted"]
    caplog.clear()
    broken = SourceDocument("a.yaml:0", {**_doc("a"), "extra": 1})
    with caplog.at_level(logging.INFO, logger="authz.sources.files"):
        second = store.update("files", [broken])
        report(second, previous=first)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "policy default/a (a.yaml:0) invalid: extra: unknown field"
    )


def _doc(name: str) -> dict[str, object]:
    return auth_policy(name, namespace=None)
