"""The file source: poll the --policies paths and hand changes to the PolicyStore.

Polling (default every second) instead of inotify works the same on every filesystem and sees
Kubernetes ConfigMap updates, which swap a symlink rather than write the files. A cheap stat
signature (path, size, mtime, inode) per file decides what needs rereading: only changed files
are parsed again, and the store recompiles only documents whose content changed, so editing one
file among thousands costs about one file.

A file that stops parsing (an editor's half-written save, a stray "garbage: [") or that can no
longer be read keeps serving the documents of its last version that parsed whole: dropping them
would answer 403 no_policy for its hosts until someone notices. The failure is still reported
(log, `authz_policies{state="invalid"}`, `authz validate`), and the next version that parses
replaces the old one. The change time is part of the signature, so a file whose permissions are
repaired is read again although its content did not change.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from authz.errors import Problem
from authz.policy.gcpause import collector_paused
from authz.policy.snapshot import PolicyStateKind, Snapshot
from authz.policy.store import SourceDocument
from authz.sources.yamlfiles import discover, read

log = logging.getLogger(__name__)

SOURCE_NAME = "files"
FileStamp = tuple[str, int, int, int, int]
#: Appended to the problems of a file that failed while its last good version keeps serving.
KEEPS_SERVING = " (the file's last good version keeps serving)"
Signature = tuple[FileStamp, ...]


def _signature(paths: tuple[Path, ...]) -> Signature:
    out = []
    for path in discover(paths):
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
    return tuple(out)


def report(snapshot: Snapshot, *, previous: Snapshot | None) -> None:
    """Log each policy state that changed since the previous snapshot."""
    before = {(s.key, s.location): s for s in previous.states} if previous else {}
    for state in snapshot.states:
        old = before.get((state.key, state.location))
        if old is not None and (old.state, old.message) == (state.state, state.message):
            continue
        if state.state is PolicyStateKind.READY:
            log.info("policy %s (%s) accepted", state.key, state.location)
        else:
            log.warning(
                "policy %s (%s) %s: %s",
                state.key or "?",
                state.location,
                state.state.value,
                state.message,
            )


def _read(path: str, good: dict[str, list[SourceDocument]]) -> list[SourceDocument]:
    """The documents to serve for one file: what it holds when it parsed whole (remembered in
    `good`), else its last good documents beside the problems of the failed version."""
    result = read(Path(path))
    if result.whole:
        good[path] = result.documents
        return result.documents
    previous = good.get(path)
    if previous is None:
        return result.documents
    failed = [
        replace(
            doc, problems=tuple(Problem(p.path, p.message + KEEPS_SERVING) for p in doc.problems)
        )
        for doc in result.documents
        if doc.body is None
    ]
    return [*previous, *failed]


class FileSource:
    def __init__(
        self,
        paths: tuple[Path, ...],
        *,
        update: Callable[[str, list[SourceDocument]], Snapshot],
        interval: float = 1.0,
    ) -> None:
        self._paths = paths
        self._update = update
        self._interval = interval
        self._signature: Signature | None = None
        self._parsed: dict[FileStamp, list[SourceDocument]] = {}
        #: Per file path, the documents of its last version that was read and parsed whole.
        self._good: dict[str, list[SourceDocument]] = {}

    def load(self) -> Snapshot | None:
        """Read and compile every file if anything changed; the new snapshot, if one was made.

        Blocking (disk and CPU): the service calls it in a worker thread, off the check path.
        """
        signature = _signature(self._paths)
        if signature == self._signature:
            return None
        parsed: dict[FileStamp, list[SourceDocument]] = {}
        good = {stamp[0]: self._good[stamp[0]] for stamp in signature if stamp[0] in self._good}
        with collector_paused():
            for stamp in signature:
                cached = self._parsed.get(stamp)
                parsed[stamp] = cached if cached is not None else _read(stamp[0], good)
        reread = sum(1 for stamp in signature if stamp not in self._parsed)
        documents = [doc for stamp in signature for doc in parsed[stamp]]
        log.debug(
            "%d policy document(s) in %d file(s); %d file(s) read",
            len(documents),
            len(signature),
            reread,
        )
        snapshot = self._update(SOURCE_NAME, documents)
        self._signature, self._parsed, self._good = signature, parsed, good
        return snapshot

    async def run(self) -> None:
        """Poll forever. A failing poll is logged and retried; the last snapshot keeps serving."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.load)
            except Exception:
                log.exception("reloading policy files failed; the current policies keep serving")
