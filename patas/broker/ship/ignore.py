"""Which files a snapshot leaves out: `.gitignore` and `.patasignore` rules, as git reads them.

A rule file's patterns apply to paths relative to the folder that holds it; the last matching
pattern decides (`!` re-includes); a pattern with a slash before its end is anchored to that
folder, one without matches a name at any depth; a trailing slash matches folders only; `*` and
`?` never cross a slash, `**` does. As in git, a file under an excluded folder cannot be
re-included (the folder is never entered).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GITIGNORE = ".gitignore"
PATASIGNORE = ".patasignore"


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    negated: bool
    folders_only: bool


def parse_rules(text: str) -> tuple[Rule, ...]:
    """The rules of one ignore file, in order."""
    rules = []
    for line in text.splitlines():
        rule = _rule(line)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _rule(line: str) -> Rule | None:
    line = re.sub(r"(?<!\\)\s+$", "", line)  # trailing spaces go, unless escaped
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    elif line.startswith("\\"):
        line = line[1:] if line[1:2] in ("#", "!") else line
    folders_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    body = _translate(line.lstrip("/"))
    prefix = "" if anchored else "(?:.*/)?"
    return Rule(re.compile(prefix + body + r"\Z", re.DOTALL), negated, folders_only)


def _translate(glob: str) -> str:
    """A gitignore glob as a regular expression over a slash-separated relative path."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i) and (i == 0 or glob[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i) and (i == 0 or glob[i - 1] == "/") and i + 2 == len(glob):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[":
            end = glob.find("]", i + 2)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            inside = glob[i + 1 : end]
            if inside.startswith("!"):
                inside = "^" + inside[1:]
            out.append("[" + inside.replace("\\", "\\\\") + "]")
            i = end + 1
        elif glob[i] == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def verdict(rules: tuple[Rule, ...], relative: str, is_folder: bool) -> bool | None:
    """True (ignored), False (re-included) or None (no rule matches) for a path relative to
    the rules' folder."""
    decided = None
    for rule in rules:
        if rule.folders_only and not is_folder:
            continue
        if rule.pattern.match(relative):
            decided = not rule.negated
    return decided


class IgnoreRules:
    """The rule files of a tree, read once per folder, from the tree's root down."""

    def __init__(self, root: Path, names: tuple[str, ...]) -> None:
        self.root = root
        self.names = names
        self._by_folder: dict[str, tuple[Rule, ...]] = {}
        self._chains: dict[str, tuple[tuple[int, tuple[Rule, ...]], ...]] = {}
        self._folder_ignored: dict[str, bool] = {"": False}

    def _rules_of(self, folder: str) -> tuple[Rule, ...]:
        if folder not in self._by_folder:
            rules: list[Rule] = []
            for name in self.names:
                path = self.root / folder / name
                try:
                    rules += parse_rules(path.read_text(errors="replace"))
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    pass
            self._by_folder[folder] = tuple(rules)
        return self._by_folder[folder]

    def _chain(self, folder: str) -> tuple[tuple[int, tuple[Rule, ...]], ...]:
        """The rule files that apply inside `folder`, shallowest first, each with the length of
        the prefix to strip from a path to make it relative to the rule file's folder."""
        if folder not in self._chains:
            parent = folder.rpartition("/")[0] if "/" in folder else ""
            above = self._chain(parent) if folder else ()
            rules = self._rules_of(folder)
            own = ((len(folder) + 1 if folder else 0, rules),) if rules else ()
            self._chains[folder] = above + own
        return self._chains[folder]

    def ignores(self, relative: str, is_folder: bool) -> bool:
        """Whether the rules exclude this path (relative to the root, slash-separated); its
        parent folders are taken as already admitted (the walk checks them first)."""
        ignored = False
        for prefix, rules in self._chain(relative.rpartition("/")[0]):  # deeper files override
            found = verdict(rules, relative[prefix:], is_folder)
            if found is not None:
                ignored = found
        return ignored

    def ignores_with_parents(self, relative: str, is_folder: bool) -> bool:
        """Whether this path or any folder above it is excluded."""
        return self._ignored_folder(relative.rpartition("/")[0]) or self.ignores(relative, is_folder)

    def _ignored_folder(self, folder: str) -> bool:
        if folder not in self._folder_ignored:
            parent = folder.rpartition("/")[0]
            self._folder_ignored[folder] = self._ignored_folder(parent) or self.ignores(folder, True)
        return self._folder_ignored[folder]
