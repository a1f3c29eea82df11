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

libyaml older than 0.2.6 has no nesting limit of its own while its composer recurses in C: a
hostile document could overflow the stack before any check here runs. With such a libyaml, or
none, the fast path is off (AVAILABLE is False) and every document takes the reference path.
"""

from __future__ import annotations

from typing import Any

import yaml

_STR = "tag:yaml.org,2002:str"
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
    """libyaml's parser and composer with the reference loader's resolvers (set by configure)."""


def configure(implicit_resolvers: dict[Any, list[tuple[str, Any]]]) -> None:
    """Resolve plain scalars exactly as the reference loader does (it keeps timestamps strings)."""
    _Loader.yaml_implicit_resolvers = implicit_resolvers


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
    return _Walk(loader, max_depth).value(node, 1)


class _Walk:
    """Builds Python values from a composed node graph, refusing anything out of the ordinary."""

    __slots__ = ("_bools", "_loader", "_max_depth", "_seen")

    def __init__(self, loader: Any, max_depth: int) -> None:
        self._loader = loader
        self._max_depth = max_depth
        self._bools: dict[str, bool] = loader.bool_values
        #: Every node met so far: meeting one twice means an alias (the reference counts those).
        self._seen: set[int] = set()

    def value(self, node: yaml.Node, depth: int) -> Any:
        # Depth is counted as the reference composer counts it: the root is 1, every node one more.
        if depth > self._max_depth or id(node) in self._seen:
            raise NotPlain
        self._seen.add(id(node))
        tag = node.tag
        if tag == _STR and type(node) is yaml.ScalarNode:
            return node.value
        if tag == _MAP and type(node) is yaml.MappingNode:
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                out[self._key(key_node, depth + 1)] = self.value(value_node, depth + 1)
            return out
        if tag == _SEQ and type(node) is yaml.SequenceNode:
            return [self.value(item, depth + 1) for item in node.value]
        if type(node) is yaml.ScalarNode:
            return self._scalar(node, tag)
        raise NotPlain

    def _key(self, node: yaml.Node, depth: int) -> Any:
        # A merge key ("<<"), a "=" value key or a collection as a key: the reference's business.
        if type(node) is not yaml.ScalarNode or depth > self._max_depth or id(node) in self._seen:
            raise NotPlain
        self._seen.add(id(node))
        if node.tag == _STR:
            return node.value
        return self._scalar(node, node.tag)

    def _scalar(self, node: yaml.ScalarNode, tag: str) -> Any:
        if tag == _STR:
            return node.value
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
