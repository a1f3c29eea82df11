"""FileSource: reread and recompile only when a file changed; report state changes once."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from authz.jwt.providers import offline_provider
from authz.policy.snapshot import PolicyStateKind, Snapshot
from authz.policy.store import PolicyStore, SourceDocument
from authz.sources.files import SOURCE_NAME, FileSource, report
from authz.sources.yamlfiles import MAX_FILE_BYTES
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


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_text(p.read_text() + "garbage: [\n"), "not valid YAML"),
        (
            lambda p: p.write_bytes(p.read_bytes() + "# caf\u00e9\n".encode("latin-1")),
            "cannot read",
        ),
        (lambda p: p.write_text(p.read_text() + "#" * MAX_FILE_BYTES), "larger than"),
        (lambda p: p.write_text("a: *nowhere\n"), "not valid YAML"),
    ],
    ids=["garbage-appended", "not-utf8", "oversized", "bad-alias"],
)
def test_a_file_that_stops_parsing_keeps_serving_its_last_good_documents(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], object],
    problem: str,
) -> None:
    path = tmp_path / "two.yaml"
    write_policies(
        path,
        auth_policy("a", namespace=None, hosts=["a.example.com"]),
        auth_policy("b", namespace=None, hosts=["b.example.com"]),
    )
    write(tmp_path / "other.yaml", "other")
    previous: list[Snapshot] = []

    def logged(source: str, documents: Sequence[SourceDocument]) -> Snapshot:
        snapshot = recorder(source, documents)
        report(snapshot, previous=previous[-1] if previous else None)
        previous.append(snapshot)
        return snapshot

    recorder = Recorder()
    source = FileSource((tmp_path,), update=logged)
    assert source.load() is not None
    damage(path)
    bump_mtime(path)
    with caplog.at_level(logging.WARNING, logger="authz.sources.files"):
        damaged = source.load()
    assert damaged is not None
    # Every document of the file's last good version still answers for its host.
    assert damaged.lookup("a.example.com") is not None
    assert damaged.lookup("b.example.com") is not None
    assert damaged.lookup("other.example.com") is not None
    invalid = [s for s in damaged.states if s.state is PolicyStateKind.INVALID]
    assert len(invalid) == 1  # counted as authz_policies{state="invalid"}
    assert problem in invalid[0].message
    assert invalid[0].message.endswith("(the file's last good version keeps serving)")
    (record,) = caplog.records
    assert str(path) in record.getMessage()
    assert "the file's last good version keeps serving" in record.getMessage()

    # The next version that parses replaces the old one entirely.
    write_policies(path, auth_policy("c", namespace=None, hosts=["c.example.com"]))
    bump_mtime(path)
    fixed = source.load()
    assert fixed is not None
    assert fixed.lookup("c.example.com") is not None
    assert fixed.lookup("a.example.com") is None
    assert all(s.state is PolicyStateKind.READY for s in fixed.states)


def test_a_file_broken_from_the_start_serves_nothing_and_a_removed_file_nothing_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("garbage: [\n")
    source = FileSource((tmp_path,), update=Recorder())
    first = source.load()
    assert first is not None
    assert first.policies == ()
    write(path, "a")
    bump_mtime(path)
    assert source.load() is not None
    path.write_text("garbage: [\n")
    bump_mtime(path)
    kept = source.load()
    assert kept is not None
    assert kept.lookup("a.example.com") is not None
    path.unlink()  # deleting is deliberate: its policies go
    gone = source.load()
    assert gone is not None
    assert gone.lookup("a.example.com") is None


def test_a_repaired_permission_is_seen_through_the_change_time(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    write(path, "a")
    source = FileSource((tmp_path,), update=Recorder())
    source.load()
    before = path.stat().st_mtime_ns
    path.chmod(0o600)  # only the change time moves
    assert path.stat().st_mtime_ns == before
    assert source.load() is not None


def _doc(name: str) -> dict[str, object]:
    return auth_policy(name, namespace=None)


def test_the_loader_log_says_did_you_mean(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "typo.yaml"
    write(path, "a")
    path.write_text(path.read_text().replace("kind: AuthPolicy", "kind: Authpolicy"))
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    source = FileSource((tmp_path,), update=store.update)
    with caplog.at_level(logging.WARNING, logger="authz.sources.files"):
        snapshot = source.load()
        assert snapshot is not None
        report(snapshot, previous=None)
    (record,) = caplog.records
    assert record.getMessage() == (
        f"policy ? ({path}:0) invalid: kind: unknown kind 'Authpolicy'; did you mean 'AuthPolicy'?"
    )
