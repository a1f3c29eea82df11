"""Read AuthPolicy documents from YAML/JSON files, one broken document never hiding another.

A multi-document file is split on its "---" markers before parsing, so a syntax error in one
document costs that document only. Timestamps stay strings (as the API server returns them),
and aliases are capped: a "billion laughs" document is refused instead of walked.
Documents of other kinds are skipped (a policy directory may hold other manifests); an
AuthPolicy of a version this build does not know is reported, and so is a kind that is almost
AuthPolicy (another case, or another kind of the authz.dev group): skipping it silently would
leave its hosts unprotected without a word.

`read` also says whether the whole file could be read and parsed: a file half saved by an
editor fails to parse for a moment, and its source then keeps serving the file's last good
documents instead of dropping them (authz.sources.files).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from authz.errors import Problem
from authz.policy.gcpause import collector_paused
from authz.policy.schema import API_VERSION, KIND
from authz.policy.store import SourceDocument
from authz.sources import yamlblocks, yamlfast

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 100
#: Policies nest about 6 levels deep; 64 leaves room for inline JWKS and future fields.
MAX_DEPTH = 64
#: A document with aliases may expand to at most this many nodes when walked.
MAX_EXPANDED_NODES = 100_000
_MARKER = re.compile(r"^(---|\.\.\.)([ \t].*)?$")
_MARKER_STARTS = ("---", "...")  # a cheap test first: most lines are not markers


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamp conversion, with an alias budget and a nesting limit.

    The nesting limit is explicit rather than left to Python's recursion limit, whose reach
    depends on how deep the caller's stack already is (a worker thread, a test runner).
    """

    aliases = 0
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases in one document")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError("the document is nested too deeply")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
yamlfast.configure(_Loader.yaml_implicit_resolvers)


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


#: Characters other than "\n" that end a line for str.splitlines.
_OTHER_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_MARKER_LINES = re.compile(r"^(?:---|\.\.\.)(?:[ \t][^\n]*)?$", re.MULTILINE)
#: A line with something other than blanks and a comment.
_CONTENT_LINE = re.compile(r"^[^\S\n]*[^\s#]", re.MULTILINE)


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """Split a YAML stream into (first line number, document text)."""
    if _OTHER_BREAKS.search(text) is not None:
        yield from _chunks_by_line(text)
        return
    # The same split as _chunks_by_line's, found by regular expressions instead of line by line.
    start, begin, line, counted = 1, 0, 1, 0
    for marker in _MARKER_LINES.finditer(text):
        at = marker.start()
        if _CONTENT_LINE.search(text, begin, at) is not None:
            yield start, text[begin:at]
        line, counted = line + text.count("\n", counted, at), at
        # A document is numbered from its marker's line, which "..." leaves out of its text.
        start, begin = line, at if text.startswith("---", at) else marker.end() + 1
    if _CONTENT_LINE.search(text, begin) is not None:
        yield start, text[begin:]


def _chunks_by_line(text: str) -> Iterator[tuple[int, str]]:
    start, lines = 1, list[str]()
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line[:3] in _MARKER_STARTS and _MARKER.match(line.rstrip("\r\n")):
            if any(item.strip() and not item.lstrip().startswith("#") for item in lines):
                yield start, "".join(lines)
            start, lines = number, ([line] if line.startswith("---") else [])
        else:
            lines.append(line)
    if any(item.strip() and not item.lstrip().startswith("#") for item in lines):
        yield start, "".join(lines)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a cyclic document, or one whose aliases expand it past MAX_EXPANDED_NODES.

    Few aliases can describe billions of values (each level repeating the previous one); every
    later walk (hashing, schema validation) would pay for all of them. Sizes are computed per
    shared node, iteratively, so this check itself stays linear in the document's text.
    """
    sizes: dict[int, int] = {}
    walking: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            walking.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_EXPANDED_NODES:
                raise yaml.YAMLError(
                    f"aliases expand the document to more than {MAX_EXPANDED_NODES} values"
                )
            sizes[id(node)] = size
        elif id(node) not in sizes:
            if id(node) in walking:
                raise yaml.YAMLError("an alias refers to an anchor that contains it")
            walking.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


def _parse(chunk: str) -> Any:
    try:
        return yamlblocks.parse(chunk, max_depth=MAX_DEPTH)
    except yamlfast.NotPlain:
        return _parse_reference(chunk)


def parse_single(text: str) -> Any:
    """One YAML document, with the same limits as policy files. Raises yaml.YAMLError."""
    return _parse_reference(text)


def yaml_problem(exc: yaml.YAMLError, *, first_line: int = 1) -> str:
    """What a parse error says to whoever edits the file: the line (`first_line` is the line of
    the file the parsed text starts at) and the parser's own words."""
    mark = getattr(exc, "problem_mark", None)
    at = f" (line {first_line + mark.line})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"not valid YAML{at}: {problem}"


def _parse_reference(chunk: str) -> Any:
    loader = _Loader(chunk)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if loader.aliases:
            _check_expansion(node)
        return loader.construct_document(node)
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        # An explicit tag on a value it does not fit ("!!int abc", "!!bool maybe").
        raise yaml.YAMLError(f"a value does not fit its tag: {exc}") from None
    finally:
        loader.dispose()


class FileRead(NamedTuple):
    """What one file held."""

    documents: list[SourceDocument]
    #: False when the file could not be read, or some document in it is not valid YAML.
    whole: bool
    #: True when the file holds no YAML document at all (only blanks and comments).
    empty: bool = False


def _kind_hint(body: Mapping[str, Any]) -> str | None:
    """A problem for a document that was probably meant to be an AuthPolicy, or None."""
    kind, version = body.get("kind"), body.get("apiVersion")
    group = version.partition("/")[0] if isinstance(version, str) else None
    if not isinstance(kind, str) or (
        kind.lower() != KIND.lower() and group != API_VERSION.partition("/")[0]
    ):
        return None
    return f"unknown kind {kind!r}; did you mean {KIND!r}?"


def read_file(path: Path) -> list[SourceDocument]:
    """The AuthPolicy documents of one file (invalid ones included, with their problems)."""
    return read(path).documents


def read(path: Path) -> FileRead:
    """The AuthPolicy documents of one file, and whether it was read and parsed whole."""
    location = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            too_large = Problem("", f"file is larger than {MAX_FILE_BYTES} bytes")
            return FileRead([SourceDocument(f"{location}:0", None, (too_large,))], whole=False)
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        unreadable = Problem("", f"cannot read file: {exc}")
        return FileRead([SourceDocument(f"{location}:0", None, (unreadable,))], whole=False)
    documents: list[SourceDocument] = []
    whole, empty = True, True
    for index, (line, chunk) in enumerate(_chunks(text)):
        empty = False
        where = f"{location}:{index}"
        try:
            body = _parse(chunk)
        except yaml.YAMLError as exc:
            problem = Problem("", yaml_problem(exc, first_line=line))
            documents.append(SourceDocument(where, None, (problem,)))
            whole = False
            continue
        if not isinstance(body, dict):
            continue
        if body.get("kind") != KIND:
            hint = _kind_hint(body)
            if hint is not None:
                documents.append(SourceDocument(where, None, (Problem("kind", hint),)))
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
    return FileRead(documents, whole=whole, empty=empty)


def read_all(paths: tuple[Path, ...]) -> tuple[list[SourceDocument], list[Path]]:
    files = discover(paths)
    with collector_paused():
        return [doc for path in files for doc in read_file(path)], files
