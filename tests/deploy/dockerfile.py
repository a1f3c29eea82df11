"""Read the Dockerfile and its build context the way `docker build` does, without a Docker engine.

`parse` splits the Dockerfile into stages and instructions (continuations joined, comments
dropped); `context_files` applies .dockerignore (last matching pattern wins, a pattern also matches
everything under a matched directory); `copy_into` carries out a stage's COPY instructions from the
context into a directory standing for the image's filesystem.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.value for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "dangling line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name, instructions=()))
        else:
            assert stages, f"{keyword} before FROM"
            last = stages[-1]
            stages[-1] = Stage(
                last.base, last.name, (*last.instructions, Instruction(keyword, value))
            )
    return stages


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, str, re.Pattern[str]], ...]  # (re-include?, pattern, regex)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            rules.append((negate, pattern, _regex(pattern)))
        return cls(tuple(rules))

    def excluded(self, rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negate, _, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                result = not negate
        return result

    def may_include_under(self, rel_dir: str) -> bool:
        return any(negate and p.startswith(rel_dir + "/") for negate, p, _ in self.rules)


def context_files(root: Path, ignore: DockerIgnore) -> list[str]:
    """Paths (relative, POSIX) that `docker build` would send as the build context."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [
            d
            for d in dirnames
            if not ignore.excluded(prefix + d) or ignore.may_include_under(prefix + d)
        ]
        found.extend(prefix + f for f in filenames if not ignore.excluded(prefix + f))
    return sorted(found)


def copy_into(stage: Stage, *, context: Path, files: list[str], image_root: Path) -> Path:
    """Carry out `stage`'s WORKDIR and COPY (not COPY --from) into `image_root`; returns the
    final WORKDIR as a local path. Symlinks are copied as links, as Docker does."""
    workdir = PurePosixPath("/")
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.value
        if instruction.keyword != "COPY" or instruction.value.startswith("--from"):
            continue
        *sources, dest = shlex.split(instruction.value)
        target = image_root / (workdir / dest).relative_to("/")
        into_directory = dest.endswith("/") or len(sources) > 1
        for source in sources:
            pattern = source.rstrip("/")
            copied = 0
            for rel in files:
                parents = ["/".join(rel.split("/")[:n]) for n in range(1, rel.count("/") + 1)]
                if fnmatch.fnmatchcase(rel, pattern):  # the source is this file
                    destination = target / rel.rsplit("/", 1)[-1] if into_directory else target
                else:  # the source is a directory: its contents are copied
                    directory = next((p for p in parents if fnmatch.fnmatchcase(p, pattern)), None)
                    if directory is None:
                        continue
                    destination = target / rel[len(directory) + 1 :]
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (context / rel).is_symlink():
                    destination.symlink_to(os.readlink(context / rel))
                else:
                    shutil.copy2(context / rel, destination)
                copied += 1
            if not copied and not any(c in source for c in "*?["):
                raise FileNotFoundError(f"COPY {source}: not in the build context")
    return image_root / workdir.relative_to("/")
