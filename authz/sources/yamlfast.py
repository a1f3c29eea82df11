"""The fast path for one policy document: libyaml composes the node graph, a plain walk builds it.

PyYAML's pure-Python scanner and parser spend about 1.7 ms on a typical policy document, which
makes 10 k policies take 17 s to read. libyaml (PyYAML's C extension) composes the same node
graph in a small fraction of that, and the walk here turns it into dicts, lists and scalars
without the generic constructor's bookkeeping.

The pure-Python loader in yamlfiles.py stays the reference: it checks the alias budget and the
nesting limit while it composes, refuses alias bombs, and words every error message users see.
This path never answers for it in any case that is not plain. A document that libyaml refuses,
or that uses an alias, an unusual tag (binary, set, explicit timestamp, a custom "!tag"), a
merge key, a non-scalar key, or nests deeper than the reference allows raises NotPlain, and the
caller parses it again with the reference loader, whose value or error is then the answer.
So this module changes how long a document takes to read, never what reading it yields.

Thousands of policies repeat the same blocks (an issuer with its inline JWKS, rules, limits),
and every policy's document stays in memory while it serves. Identical blocks are therefore
built once and shared: a collection is remembered by its own text (with its column and depth,
which decide how that text reads), and every later document holding the same text at the same
place gets the same object; keys and short strings are interned. Documents are read-only
from here on (nothing in the service writes into them), so sharing cannot leak an edit from
one policy into another; an edited block has other text, hence its own object. Documents with
anything whose meaning depends on more than its own text (anchors and aliases, tags, block
scalars, directives) share nothing.

libyaml older than 0.2.6 has no nesting limit of its own while its composer recurses in C: a
hostile document could overflow the stack before any check here runs. With such a libyaml, or
none, the fast path is off (AVAILABLE is False) and every document takes the reference path.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

_STR = STR_TAG = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
#: The first libyaml that limits nesting itself (to 1000 levels) instead of recursing unbounded.
_SAFE_LIBYAML = (0, 2, 6)


def _libyaml_version() -> tuple[int, ...]:
    if not getattr(yaml, "__with_libyaml__", False):
        return ()
    from yaml import _yaml

    return tuple(_yaml.get_version())


AVAILABLE = _libyaml_version() >= _SAFE_LIBYAML


class NotPlain(Exception):
    """The document needs the reference loader: for its error message or its unusual content."""


if AVAILABLE:
    _Base: Any = yaml.CSafeLoader
else:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[misc]  # a C base class has no type information
    """libyaml's parser and composer with the reference loader's resolvers (set by configure).

    libyaml calls `resolve` for every node; PyYAML's version rebuilds a list of candidate
    patterns each time, a quarter of the composing time. This one gives the same answers
    (the safe loader has no path resolvers, so only a plain scalar's text matters) from a table
    and a bounded memo: keys like "name" or "spec" repeat in every document.
    """

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0]:
                return _STR
            tag = _plain_tags.get(value)
            if tag is None:
                tag = _resolve_plain(value)
                if len(_plain_tags) < _MEMO_SIZE:
                    _plain_tags[value] = tag
            return tag
        return _SEQ if kind is yaml.SequenceNode else _MAP


_MEMO_SIZE = 4096
_plain_tags: dict[str, str] = {}
_candidates: dict[str, tuple[tuple[str, Any], ...]] = {}


def shared(key: tuple[int, int, str]) -> Any:
    """The value remembered for a block: (depth, column, its text), or None."""
    return _shared.get(key)


def remember(key: tuple[int, int, str], value: Any) -> None:
    if len(_shared) >= _SHARED_MAX:
        _shared.clear()
    _shared[key] = value


def intern(text: str) -> str:
    """`text`, shared with every equal string when it is short (keys, names, enum values)."""
    return _intern(text) if len(text) <= _INTERN_MAX_CHARS else text


def resolves_plain(value: str) -> str:
    """The tag of a plain scalar with this text, as the reference loader resolves it."""
    return _resolve_plain(value)


def _resolve_plain(value: str) -> str:
    for tag, pattern in _candidates.get(value[:1], ()):
        if pattern.match(value):
            return tag
    return _STR


def configure(implicit_resolvers: dict[Any, list[tuple[str, Any]]]) -> None:
    """Resolve plain scalars exactly as the reference loader does (it keeps timestamps strings)."""
    if yaml.SafeLoader.yaml_path_resolvers or None in implicit_resolvers:
        raise ValueError("path and wildcard resolvers are not mirrored by the fast path")
    _Loader.yaml_implicit_resolvers = implicit_resolvers
    _candidates.clear()
    _candidates.update({first: tuple(found) for first, found in implicit_resolvers.items()})
    _plain_tags.clear()


def parse(text: str, *, max_depth: int) -> Any:
    """The value of one YAML document, or NotPlain when the reference loader must answer."""
    if not AVAILABLE:
        raise NotPlain
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        raise NotPlain from None
    finally:
        loader.dispose()
    if node is None:
        return None
    # An alias needs an anchor ("&name"); without one every node is met once, nothing to track.
    aliases = "&" in text
    shared = None if aliases or any(c in text for c in _NOT_SHARED) else text
    return _Walk(loader, max_depth, aliases_possible=aliases, text=shared).value(node, 1)


#: Characters that make a block's value depend on more than its own text: tags ("!"),
#: directives ("%"), block scalars ("|", ">": their indentation may be relative to the parent).
_NOT_SHARED = "!%|>"
#: Blocks longer than this are not shared (whole documents and specs: unique, and long to hash).
_SHARE_MAX_CHARS = 2048
#: Bounded: emptied when full, so blocks of removed policies do not stay forever.
_SHARED_MAX = 4096
#: (depth, column, text) -> value; yamlblocks reads texts whole, at column WHOLE_TEXT.
_shared: dict[tuple[int, int, str], Any] = {}
WHOLE_TEXT = -1
#: Strings up to this length are interned (keys, enum-like values), longer ones are not.
_INTERN_MAX_CHARS = 64
_intern = sys.intern


_ScalarNode = yaml.ScalarNode
_MappingNode = yaml.MappingNode
_SequenceNode = yaml.SequenceNode


class _Walk:
    """Builds Python values from a composed node graph, refusing anything out of the ordinary."""

    __slots__ = ("_bools", "_loader", "_max_depth", "_seen", "_text")

    def __init__(
        self, loader: Any, max_depth: int, *, aliases_possible: bool, text: str | None
    ) -> None:
        self._loader = loader
        self._max_depth = max_depth
        self._bools: dict[str, bool] = loader.bool_values
        #: Every node met so far, when the text has an anchor: meeting one twice means an alias.
        self._seen: set[int] | None = set() if aliases_possible else None
        #: The document's text when its blocks may be shared with other documents', else None.
        self._text = text

    def value(self, node: yaml.Node, depth: int) -> Any:
        if self._text is None or type(node) is _ScalarNode:
            return self._value(node, depth)
        start, end = node.start_mark.index, node.end_mark.index
        if end - start > _SHARE_MAX_CHARS:
            return self._value(node, depth)
        key = (depth, node.start_mark.column, self._text[start:end])
        found = _shared.get(key)
        if found is None:
            found = self._value(node, depth)
            remember(key, found)
        return found

    def _value(self, node: yaml.Node, depth: int) -> Any:
        # Depth is counted as the reference composer counts it: the root is 1, every node one more.
        if depth > self._max_depth:
            raise NotPlain
        if self._seen is not None:
            if id(node) in self._seen:
                raise NotPlain
            self._seen.add(id(node))
        kind = type(node)
        tag = node.tag
        if kind is _ScalarNode:
            if tag != _STR:
                return self._scalar(node, tag)
            text: str = node.value
            return _intern(text) if len(text) <= _INTERN_MAX_CHARS else text
        depth += 1
        if kind is _MappingNode and tag == _MAP:
            if self._seen is not None:
                return self._mapping_tracked(node, depth)
            if depth > self._max_depth:
                raise NotPlain
            # Most keys and values are plain strings: taken here, without a call per node.
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                # A merge key ("<<"), a "=" key or a collection as a key: the reference's business.
                if type(key_node) is not _ScalarNode:
                    raise NotPlain
                key = (
                    _intern(key_node.value)
                    if key_node.tag == _STR
                    else self._scalar(key_node, key_node.tag)
                )
                if type(value_node) is _ScalarNode and value_node.tag == _STR:
                    text = value_node.value
                    out[key] = _intern(text) if len(text) <= _INTERN_MAX_CHARS else text
                else:
                    out[key] = self.value(value_node, depth)
            return out
        if kind is _SequenceNode and tag == _SEQ:
            return [self.value(item, depth) for item in node.value]
        raise NotPlain

    def _mapping_tracked(self, node: yaml.Node, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not _ScalarNode:
                raise NotPlain
            out[self.value(key_node, depth)] = self.value(value_node, depth)
        return out

    def _scalar(self, node: yaml.Node, tag: str) -> Any:
        if tag == _NULL:
            return None
        try:
            if tag == _BOOL:
                return self._bools[node.value.lower()]
            if tag == _INT:
                return self._loader.construct_yaml_int(node)
            if tag == _FLOAT:
                return self._loader.construct_yaml_float(node)
        except (LookupError, ValueError):  # an explicit tag on a value it does not fit
            raise NotPlain from None
        raise NotPlain
