"""`authz validate`: check policy files offline through the same code that loads them.

Documents are read by the file source's reader and compiled by the same compiler, with keys
bound offline (inline JWKS parsed, remote keys never fetched). What the service would refuse
beyond a document's own problems is reported too: hosts outside the namespace's grants (with
`--allowed-hosts`), and host conflicts between the files. A file without any YAML document is
named: an empty policy file is more often a mistake (a truncated save) than an intent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from authz.errors import Problem
from authz.jwt.providers import offline_provider
from authz.policy.ownership import HostGrants, apply_grants
from authz.policy.snapshot import build_index
from authz.policy.store import SourceDocument, compile_documents
from authz.sources.yamlfiles import discover, read


def validate_paths(
    paths: list[Path], *, quiet: bool, out: TextIO, grants: HostGrants | None = None
) -> int:
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"{path}: no such file or directory", file=out)
    files = discover(tuple(p for p in paths if p.exists()))
    documents: list[SourceDocument] = []
    empty: list[Path] = []
    for path in files:
        result = read(path)
        documents.extend(result.documents)
        if result.empty:
            empty.append(path)
    for path in empty:
        print(f"{path}: the file is empty (no YAML document)", file=out)
    serving, states, _, _ = compile_documents(documents, bind=offline_provider, last_good={})
    allowed, refused = apply_grants(serving, grants)
    _, conflicts = build_index(allowed)
    failures = 0
    for doc, state in zip(documents, states, strict=True):
        problems = list(state.problems)
        if not problems and state.key in refused:
            problems = list(refused[state.key])
        elif not problems and state.key in conflicts:
            problems = [Problem("spec.hosts", conflicts[state.key])]
        for problem in problems:
            print(f"{doc.location}: {problem}", file=out)
        failures += bool(problems)
    if not documents:
        print("no AuthPolicy documents (apiVersion authz.dev/v1alpha1) found", file=out)
    elif not quiet:
        valid = len(documents) - failures
        print(
            f"{valid} valid, {failures} invalid AuthPolicy document(s) in {len(files)} file(s)",
            file=out,
        )
    return 1 if failures or missing or empty or not documents else 0
