"""Read a plain block-style document block by block, so that blocks many documents repeat are
composed once.

Even with libyaml, composing a node graph costs a Python object per node, and a directory of
thousands of policies repeats most of its text: the issuer with its inline JWKS, the rules,
the limits. A block-style mapping or sequence is a list of entries that YAML reads
independently of one another (without anchors, tags, directives or block scalars, which this
path leaves alone), so each entry can be read on its own: a block whose text was read before is
not composed again, and its value - one shared, read-only object - is used as it is (see
yamlfast on why sharing is safe). Entries are split by their indentation, down to the blocks
whose text is unique or short; those are read by yamlfast.

Any doubt ends in reading the whole document with yamlfast: text that is not plain enough to
split, an entry that does not read as one key of a mapping (or one item of a sequence), any
error. So this path decides how much text libyaml composes, never what a document yields or
which error it reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import accumulate
from operator import sub
from typing import Any

from authz.sources import yamlfast

#: Anything that makes a block's meaning depend on other text, or lines harder to split than on
#: "\n": anchors, tags, directives, block scalars, tabs and other line breaks.
_UNSPLITTABLE = re.compile("[&!%|>\t\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
#: A plain key resolving to a string ("yes:" or "1:" would not), then ":" and the line's end.
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-/]*):\n")
#: One line holding a plain scalar, or "key: scalar", both plain enough to need no libyaml: no
#: indicator first, no ": " or " #" inside, nothing after. Whether the text is a string and not
#: a number, a boolean or null is still the resolver's answer.
_LINE = re.compile(r" *(?:([A-Za-z_][A-Za-z0-9_.\-/]*): )?([A-Za-z0-9_/][A-Za-z0-9_.\-/]*)\n")
#: A line of blanks only (a comment line holds "#").
_BLANK_LINE = re.compile(r"^ *\n", re.MULTILINE)
#: Texts up to this length are remembered (whole documents and specs are unique).
_REMEMBER_MAX_CHARS = 2048
#: Bounded: emptied when full, so blocks of removed policies do not stay forever.
_REMEMBERED_MAX = 4096
#: (depth left, column of the first character, text from it) -> value.
_remembered: dict[tuple[int, int, str], Any] = {}


def parse(text: str, *, max_depth: int) -> Any:
    """The value of one YAML document, as yamlfast.parse gives it (NotPlain included)."""
    if _UNSPLITTABLE.search(text) is not None or not text.endswith("\n"):
        return yamlfast.parse(text, max_depth=max_depth)
    if text.startswith("---\n"):
        text = text[4:]
    try:
        document = _Document(text, max_depth=max_depth)
        if not document.lines:
            raise yamlfast.NotPlain
        return document.block(0, len(document.lines), -1, max_depth)
    except yamlfast.NotPlain:
        return yamlfast.parse(text, max_depth=max_depth)


class _Document:
    """The lines of one document, measured once: where each starts, how far it is indented,
    and whether it holds anything but blanks and a comment."""

    __slots__ = ("indents", "lines", "offsets", "significant", "text", "unique_below")

    def __init__(self, text: str, *, max_depth: int) -> None:
        self.text = text
        #: The document and its top-level blocks (metadata, spec) are one policy's own: looking
        #: them up would only hash their text, and remembering them push out the shared ones.
        self.unique_below = max_depth - 1
        # Every line ends with "\n" (parse made sure), and no other character breaks a line.
        self.lines = lines = text.splitlines(keepends=True)
        contents = [line.lstrip(" ") for line in lines]
        self.indents = list(map(sub, map(len, lines), map(len, contents)))
        #: None when every line has content (the usual generated document): no need to ask.
        self.significant: list[bool] | None = (
            [content[0] not in "#\n" for content in contents]
            if "#" in text or _BLANK_LINE.search(text) is not None
            else None
        )
        self.offsets = [0, *accumulate(map(len, lines))]

    def block(self, first: int, end: int, column: int, depth_left: int) -> Any:
        """The value of lines first..end-1 read as a document of its own, nested at most
        `depth_left` deep; the first line's content starts at `column` (-1: its indentation)."""
        if depth_left < 1:
            raise yamlfast.NotPlain
        indents, significant, lines = self.indents, self.significant, self.lines
        if column < 0:
            column = indents[first]
        start = self.offsets[first] + column
        text = self.text[start : self.offsets[end]]
        key = (depth_left, column, text)
        remember = depth_left < self.unique_below and len(text) <= _REMEMBER_MAX_CHARS
        if remember:
            found = _remembered.get(key)
            if found is not None:
                return found
        starts: Sequence[int] = (
            range(first + 1, end)
            if significant is None
            else [i for i in range(first + 1, end) if significant[i]]
        )
        if lines[first][column] in "#\n":
            if not starts:
                raise yamlfast.NotPlain
            first, column = starts[0], indents[starts[0]]
            starts = starts[1:]
        margin = column
        sequence = lines[first][margin] == "-"
        heads = [first]
        for i in starts:
            indent = indents[i]
            if indent == margin:
                if (lines[i][margin] == "-") is sequence:
                    heads.append(i)
            elif indent < margin:
                raise yamlfast.NotPlain
        ends = [*heads[1:], end]
        value: Any
        if sequence:
            value = [
                self.item(head, stop, margin, depth_left - 1)
                for head, stop in zip(heads, ends, strict=True)
            ]
        elif len(heads) == 1 and not starts:
            value = _line(lines[first][margin:])
            if isinstance(value, dict) and depth_left < 2:  # its value is one level deeper
                raise yamlfast.NotPlain
            if value is None:
                value = yamlfast.parse(" " * column + text, max_depth=depth_left)
        else:
            value = {}
            for head, stop in zip(heads, ends, strict=True):
                value.update(self.entry(head, stop, margin if head == first else -1, depth_left))
        if remember:
            if len(_remembered) >= _REMEMBERED_MAX:
                _remembered.clear()
            _remembered[key] = value
        return value

    def _content(self, first: int, end: int) -> bool:
        """Whether any of lines first..end-1 has content."""
        return first < end if self.significant is None else any(self.significant[first:end])

    def item(self, head: int, end: int, margin: int, depth_left: int) -> Any:
        """One "- ..." item: the value of what follows the dash, where it stands."""
        line = self.lines[head]
        after = line[margin + 1 : margin + 2]
        if after not in (" ", "\n"):
            raise yamlfast.NotPlain  # "-x" is a scalar, not an item
        content = len(line) - len(line[margin + 1 :].lstrip(" "))
        return self.block(head, end, content, depth_left)

    def entry(self, head: int, end: int, column: int, depth_left: int) -> dict[Any, Any]:
        """One "key: ..." entry of a mapping, as a dict of that one key."""
        if depth_left < 2:  # the value is one level deeper than the mapping
            raise yamlfast.NotPlain
        line = self.lines[head][column if column >= 0 else self.indents[head] :]
        matched = _KEY.fullmatch(line)
        if matched is None or yamlfast.resolves_plain(matched[1]) != yamlfast.STR_TAG:
            rest = self._content(head + 1, end)
            value = None if rest else _line(line)
            if value is None:
                start = self.offsets[head] + (column if column >= 0 else 0)
                text = " " * max(column, 0) + self.text[start : self.offsets[end]]
                value = yamlfast.parse(text, max_depth=depth_left)
            if not isinstance(value, dict) or len(value) != 1:
                raise yamlfast.NotPlain
            return value
        if not self._content(head + 1, end):
            return {yamlfast.intern(matched[1]): None}
        return {yamlfast.intern(matched[1]): self.block(head + 1, end, -1, depth_left - 1)}


def _line(line: str) -> Any:
    """The value of a one-line block when it is a plain string or maps a key to one, else None."""
    found = _lines.get(line)
    if found is None:
        found = _read_line(line)
        if found is not None:
            if len(_lines) >= _REMEMBERED_MAX:
                _lines.clear()
            _lines[line] = found
    return found


#: Lines read by _line ("kind: AuthPolicy" and the like repeat in every document).
_lines: dict[str, Any] = {}


def _read_line(line: str) -> Any:
    matched = _LINE.fullmatch(line)
    if matched is None:
        return None
    key, scalar = matched.groups()
    if yamlfast.resolves_plain(scalar) != yamlfast.STR_TAG:
        return None
    scalar = yamlfast.intern(scalar)
    if key is None:
        return scalar
    if yamlfast.resolves_plain(key) != yamlfast.STR_TAG:
        return None
    return {yamlfast.intern(key): scalar}
