"""Query-parameter rewrites on allow: what to set and what to remove, as Envoy applies them.

Envoy's ext_authz filter applies `query_parameters_to_set` (overwriting every value of the key)
and then `query_parameters_to_remove`, comparing keys as they appear in the query - still
percent-encoded. An upstream decodes them, so `api%5Fkey=...` reaches it as `api_key`: removing
only the literal name would let a client smuggle the parameter past the policy. So the client's
own query is read here, and every key that decodes (once, `+` as a space, as upstreams do) to a
name the policy sets or removes is removed in the spelling the client used. Names and values
the policy sets are percent-encoded, so a claim value cannot add a parameter of its own.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_plus

from authz.pipeline.claims import claim_at, header_value
from authz.pipeline.context import Context

#: Keys of the client's query looked at, at most: Envoy bounds the path, this bounds the work.
MAX_QUERY_KEYS = 1024


def _client_keys(raw_path: str) -> list[str]:
    _, mark, query = raw_path.partition("?")
    if not mark:
        return []
    query = query.partition("#")[0]
    keys = (part.partition("=")[0] for part in query.split("&", MAX_QUERY_KEYS)[:MAX_QUERY_KEYS])
    return list(dict.fromkeys(key for key in keys if key))


def query_rewrites(ctx: Context) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(parameters to set, keys to remove) for an allowed request of `ctx`'s policy."""
    policy = ctx.policy
    to_set: list[tuple[str, str]] = []
    names = set(policy.remove_query)
    for template in policy.set_query:
        names.add(template.name)
        value = (
            template.value
            if template.claim is None
            else header_value(claim_at(ctx.claims, template.claim))
        )
        if value is not None:
            to_set.append((quote(template.name, safe=""), quote(value, safe="")))
    kept = {key for key, _ in to_set}
    to_remove = [quote(name, safe="") for name in policy.remove_query]
    to_remove += [
        quote(t.name, safe="") for t in policy.set_query if quote(t.name, safe="") not in kept
    ]
    for key in _client_keys(ctx.request.raw_path):
        if key not in kept and unquote_plus(key) in names:
            to_remove.append(key)
    return tuple(to_set), tuple(dict.fromkeys(to_remove))
