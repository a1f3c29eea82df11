"""The --allowed-hosts file: read, validated, and watched for changes.

The file is a YAML mapping of namespace to host patterns (authz.policy.ownership says what a
pattern covers). In a cluster it is a mounted ConfigMap, which changes by swapping a symlink,
so the file is polled like the policy files: a stat signature taken through the symlinks, the
content read again only when it changed. A file that stops reading or parsing while serving
keeps the last good grants (logged), as a policy file does; at startup it is a configuration
error (exit 2), since serving without the admin's grants would serve what they meant to refuse.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

import yaml

from authz.errors import ConfigError
from authz.policy.ownership import HostGrants, grants_from
from authz.sources.yamlfiles import parse_single, yaml_problem

log = logging.getLogger(__name__)

FLAG = "--allowed-hosts"
MAX_GRANTS_BYTES = 1024 * 1024
Stamp = tuple[int, int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def load_grants(path: Path) -> HostGrants:
    """The grants in `path`. Raises ConfigError naming the flag, the file and the problem."""
    where = f"{FLAG} {path}"
    try:
        if path.stat().st_size > MAX_GRANTS_BYTES:
            raise ConfigError(f"{where}: the file is larger than {MAX_GRANTS_BYTES} bytes")
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc}") from None
    try:
        data = parse_single(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {yaml_problem(exc)}") from None
    try:
        return grants_from(data, origin=where)
    except ValueError as exc:
        raise ConfigError(
            f"{where}: {exc} (the file maps each namespace to the host patterns its "
            "AuthPolicies may claim, e.g. {shop: [orders.example.com, '*.shop.example.com']})"
        ) from None


class GrantsFile:
    """Polls the grants file and hands each new valid version to `apply`."""

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self._path = path
        self._interval = interval
        self._stamp: Stamp | None = None
        self._failing = False

    def first(self) -> HostGrants:
        """The grants at startup. Raises ConfigError (exit 2) when the file is unusable."""
        self._stamp = _stamp(self._path)
        grants = load_grants(self._path)
        log.info("host grants from %s: %d namespace(s)", self._path, len(grants.namespaces))
        return grants

    def load(self, apply: Callable[[HostGrants], object]) -> HostGrants | None:
        """Read the file again if it changed; the new grants once applied, else None.

        Blocking: the service calls it in a worker thread."""
        stamp = _stamp(self._path)
        if stamp == self._stamp and not self._failing:
            return None
        try:
            grants = load_grants(self._path)
        except ConfigError as exc:
            if not self._failing or stamp != self._stamp:
                log.error("%s; the previous host grants stay in force", exc)
            self._stamp, self._failing = stamp, True
            return None
        self._stamp, self._failing = stamp, False
        apply(grants)
        log.info(
            "host grants reloaded from %s: %d namespace(s)", self._path, len(grants.namespaces)
        )
        return grants

    async def run(self, apply: Callable[[HostGrants], object]) -> None:
        """Poll forever; a failing poll is logged and retried."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self.load, apply)
            except Exception:
                log.exception("reloading %s failed; the previous host grants stay in force", FLAG)
