"""Read AuthPolicy documents from YAML/JSON files, one broken document never hiding another.

A multi-document file is split on its "---" markers before parsing, so a syntax error in one
document costs that document only. Timestamps stay strings (as the API server returns them),
and aliases are capped: a "billion laughs" document is refused instead of walked.
Documents of other kinds are skipped (a policy directory may hold other manifests); an
AuthPolicy of a version this build does not know is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from authz.errors import Problem
from authz.policy.schema import API_VERSION, KIND
from authz.policy.store import SourceDocument

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 100
_MARKER = re.compile(r"^(---|\.\.\.)([ \t].*)?$")


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamp conversion and with an alias budget."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases in one document")
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def discover(paths: tuple[Path, ...]) -> list[Path]:
    """Every policy file under `paths` (recursively), sorted; hidden entries are skipped, which
    also skips the ..data/..timestamp directories of a mounted ConfigMap (their symlinks are read)."""
    found: set[Path] = set()
    for root in paths:
        if root.is_file():
            found.add(root)
        elif root.is_dir():
            for path in root.rglob("*"):
                relative = path.relative_to(root).parts
                if (
                    path.suffix in SUFFIXES
                    and not any(p.startswith(".") for p in relative)
                    and path.is_file()
                ):
                    found.add(path)
    return sorted(found)


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """Split a YAML stream into (first line number, document text)."""
    start, lines = 1, list[str]()
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _MARKER.match(line.rstrip("\r\n")):
            if any(item.strip() and not item.lstrip().startswith("#") for item in lines):
                yield start, "".join(lines)
            start, lines = number, ([line] if line.startswith("---") else [])
        else:
            lines.append(line)
    if any(item.strip() and not item.lstrip().startswith("#") for item in lines):
        yield start, "".join(lines)


def _parse(chunk: str) -> Any:
    loader = _Loader(chunk)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_file(path: Path) -> list[SourceDocument]:
    """The AuthPolicy documents of one file (invalid ones included, with their problems)."""
    location = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return [
                SourceDocument(
                    f"{location}:0",
                    None,
                    (Problem("", f"file is larger than {MAX_FILE_BYTES} bytes"),),
                )
            ]
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [SourceDocument(f"{location}:0", None, (Problem("", f"cannot read file: {exc}"),))]
    documents: list[SourceDocument] = []
    for index, (line, chunk) in enumerate(_chunks(text)):
        where = f"{location}:{index}"
        try:
            body = _parse(chunk)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {line + mark.line})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            documents.append(
                SourceDocument(where, None, (Problem("", f"not valid YAML{at}: {problem}"),))
            )
            continue
        if not isinstance(body, dict) or body.get("kind") != KIND:
            continue  # other manifests may share the directory
        version = body.get("apiVersion")
        if version != API_VERSION:
            documents.append(
                SourceDocument(
                    where,
                    None,
                    (Problem("apiVersion", f"{version!r} is not supported; use {API_VERSION!r}"),),
                )
            )
            continue
        documents.append(SourceDocument(where, body))
    return documents


def read_all(paths: tuple[Path, ...]) -> tuple[list[SourceDocument], list[Path]]:
    files = discover(paths)
    return [doc for path in files for doc in read_file(path)], files
