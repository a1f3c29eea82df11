"""`authz validate`: check policy files offline through the same code that loads them.

Documents are read by the file source's reader and compiled by the same compiler, with keys
bound offline (inline JWKS parsed, remote keys never fetched), and host conflicts between the
files are reported too, since the service would refuse those policies.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from authz.errors import Problem
from authz.jwt.providers import offline_provider
from authz.policy.snapshot import build_index
from authz.policy.store import compile_documents
from authz.sources.yamlfiles import read_all


def validate_paths(paths: list[Path], *, quiet: bool, out: TextIO) -> int:
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"{path}: no such file or directory", file=out)
    documents, files = read_all(tuple(p for p in paths if p.exists()))
    serving, states, _, _ = compile_documents(documents, bind=offline_provider, last_good={})
    _, conflicts = build_index(serving)
    failures = 0
    for doc, state in zip(documents, states, strict=True):
        problems = list(state.problems)
        if not problems and state.key in conflicts:
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
    return 1 if failures or missing or not documents else 0
