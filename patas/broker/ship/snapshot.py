"""A snapshot of the code to ship: every file under the `--ship` paths, named by its content.

    snapshot = take_snapshot(["."], Path.cwd(), limit_bytes=4 * GB)
    snapshot.digest       sha256 of the manifest: the code version every result records
    snapshot.files        (relative path, executable, size, sha256) per file
    snapshot.links        (relative path, target) per symbolic link inside the tree

Files are listed as git would add them: in a git work tree by `git ls-files -co
--exclude-standard` (tracked and untracked, minus what `.gitignore` excludes), elsewhere by a
walk honouring every `.gitignore`; `.patasignore` files (gitignore syntax) exclude more in both
cases, and `pataslab/` and `.git/` are always left out. A path named on the command line is
shipped even if ignored. Only the executable bit of a mode is kept (like git): a snapshot is
materialised read-only on the nodes. A symbolic link is shipped as a link when it resolves
inside the shipped root, and refused otherwise (its target would not exist, or would be
another file, on the node). Empty folders are not shipped (as in git).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from patas.broker.ship.ignore import GITIGNORE, PATASIGNORE, IgnoreRules
from patas.common.byte_sizes import size_text
from patas.common.errors import ConfigError

GB = 1024**3
DEFAULT_SHIP_LIMIT_BYTES = 4 * GB
ALWAYS_LEFT_OUT = ("pataslab", ".git")
# Files named when a snapshot is over the limit.
LARGEST_NAMED = 3
# A file's cached digest is trusted only when the file had not changed for this long when it was
# hashed: a write within the same timestamp tick would otherwise go unseen (git's "racy clean").
RACY_WINDOW_S = 2.0
HASH_CHUNK_BYTES = 1 << 20
GIT_TIMEOUT_S = 30.0


class ShipError(ConfigError):
    """A `--ship` path cannot be shipped as asked."""


@dataclass(frozen=True)
class ShippedFile:
    path: str  # relative to the shipped root, slash-separated
    executable: bool
    size: int
    sha256: str

    @property
    def blob(self) -> str:
        """Its name in a node's blob cache: the digest, and the mode it is linked with."""
        return self.sha256 + (".x" if self.executable else "")


@dataclass(frozen=True)
class GitVersion:
    commit: str
    dirty: bool  # a shipped file differs from the commit, or is not in it


@dataclass(frozen=True)
class Snapshot:
    root: Path  # the folder the shipped paths are relative to (the current folder)
    files: tuple[ShippedFile, ...]
    links: tuple[tuple[str, str], ...]
    git: GitVersion | None

    @property
    def manifest(self) -> bytes:
        """What a node needs to build the snapshot from its blobs; its digest names the snapshot."""
        files = [[f.path, int(f.executable), f.size, f.sha256] for f in self.files]
        return json.dumps({"files": files, "links": [list(link) for link in self.links]}, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.manifest).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def source(self, shipped: ShippedFile) -> Path:
        return self.root / shipped.path


def take_snapshot(paths: list[str], root: Path, limit_bytes: int, cache: Path | None = None) -> Snapshot:
    """The snapshot of `paths` (relative to `root`); ShipError for a path that does not exist,
    leaves the root, holds a link leading out of it, or a total over `limit_bytes`."""
    root = root.resolve()
    relative = [_relative(path, root) for path in paths]
    git_root = _git_toplevel(root)
    names = _listed(relative, root, git_root is not None)
    hashes = _HashCache(cache / "hashes" / (hashlib.sha256(str(root).encode()).hexdigest()[:16] + ".json") if cache else None)
    files, links = [], []
    base = str(root)
    for name in sorted(set(names)):
        path = f"{base}/{name}"
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue  # tracked by git but deleted: not part of the tree
        if stat.S_ISLNK(info.st_mode):
            links.append((name, _link_target(Path(path), name, root)))
        elif stat.S_ISREG(info.st_mode):
            executable = bool(info.st_mode & stat.S_IXUSR)
            files.append(ShippedFile(name, executable, info.st_size, hashes.digest(path, info)))
    hashes.save()
    snapshot = Snapshot(root, tuple(files), tuple(links), _git_version(root, relative) if git_root else None)
    _check_limit(snapshot, limit_bytes)
    return snapshot


def _relative(path: str, root: Path) -> str:
    full = Path(os.path.abspath(root / os.path.expanduser(path)))
    if not os.path.lexists(full):
        raise ShipError(f"--ship {path}: no such file or folder (paths are relative to the current folder, {root})")
    try:
        inside = full.relative_to(root)
    except ValueError:
        raise ShipError(f"--ship {path}: outside the current folder {root} (run patas from a folder that holds it)") from None
    return inside.as_posix() if str(inside) != "." else ""


def _listed(relative: list[str], root: Path, in_git: bool) -> list[str]:
    patasignore = IgnoreRules(root, (PATASIGNORE,))
    names: list[str] = []
    for top in relative:
        full = root / top if top else root
        if top and not full.is_dir() or full.is_symlink():
            names.append(top)  # named on the command line: shipped as asked
            continue
        found = _git_files(root, top) if in_git else _walk(root, top)
        names += [n for n in found if not _always_left_out(n) and not patasignore.ignores_with_parents(n, False)]
    return names


def _always_left_out(name: str) -> bool:
    return any(part in ALWAYS_LEFT_OUT for part in name.split("/")[:-1]) or name.split("/")[-1] == ".git"


def _git_toplevel(root: Path) -> Path | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git here: walk the tree ourselves
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def _git_files(root: Path, top: str) -> list[str]:
    command = ["git", "-c", "core.quotePath=off", "ls-files", "-z", "-co", "--exclude-standard", "--", top or "."]
    done = subprocess.run(command, cwd=root, capture_output=True, timeout=GIT_TIMEOUT_S)
    if done.returncode != 0:
        raise ShipError(f"--ship {top or '.'}: git ls-files failed: {done.stderr.decode(errors='replace').strip()}")
    names = [os.fsdecode(n) for n in done.stdout.split(b"\0") if n]
    listed = []
    for name in names:
        if (root / name).is_dir() and not (root / name).is_symlink():
            listed += _walk(root, name)  # a submodule: git lists it as one entry
        else:
            listed.append(name)
    return listed


def _walk(root: Path, top: str) -> list[str]:
    """The files (and links) under `top` that no .gitignore excludes, as git would list them."""
    gitignore = IgnoreRules(root, (GITIGNORE,))
    found: list[str] = []
    folders = [top]
    while folders:
        folder = folders.pop()
        prefix = folder + "/" if folder else ""
        with os.scandir(root / folder if folder else root) as entries:
            for entry in entries:
                name = prefix + entry.name
                is_folder = entry.is_dir(follow_symlinks=False)  # a link is shipped as a link, never followed
                if is_folder and entry.name in ALWAYS_LEFT_OUT or gitignore.ignores(name, is_folder):
                    continue
                (folders if is_folder else found).append(name)
    return found


def _link_target(path: Path, name: str, root: Path) -> str:
    target = os.readlink(path)
    resolved = Path(os.path.realpath(path))
    try:
        inside = resolved.relative_to(root)
    except ValueError:
        raise ShipError(
            f"--ship: {name} is a link to {target}, outside {root}"
            f" (ship what it points to instead, or add {name} to .patasignore)"
        ) from None
    if os.path.isabs(target):  # as a relative link it points to the same file in the node's copy
        return os.path.relpath(root / inside, (root / name).parent)
    return target


def _git_version(root: Path, relative: list[str]) -> GitVersion | None:
    head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    if head.returncode != 0:
        return None  # a repository without a commit yet
    status = subprocess.run(
        ["git", "status", "--porcelain", "-z", "--", *[r or "." for r in relative]],
        cwd=root, capture_output=True, timeout=GIT_TIMEOUT_S,
    )  # fmt: skip
    return GitVersion(head.stdout.strip(), bool(status.stdout.strip(b"\0")))


def _check_limit(snapshot: Snapshot, limit_bytes: int) -> None:
    if snapshot.size <= limit_bytes:
        return
    largest = sorted(snapshot.files, key=lambda f: f.size, reverse=True)[:LARGEST_NAMED]
    named = ", ".join(f"{f.path} ({size_text(f.size)})" for f in largest)
    raise ShipError(
        f"--ship: {size_text(snapshot.size)} to ship, over --ship-limit {size_text(limit_bytes)}; largest: {named}"
        " (add them to .patasignore, or raise --ship-limit)"
    )


class _HashCache:
    """Digests of files already hashed, by path, size, inode and times: a second snapshot of an
    unchanged tree reads no file (like git's index)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[object]] = {}
        self.used: dict[str, list[object]] = {}
        if path is not None:
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, path: str, info: os.stat_result) -> str:
        key = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        known = self.entries.get(path)
        if known is not None and known[:4] == key:
            self.used[path] = known
            return str(known[4])
        digest = _hash_file(path)
        if time.time() - max(info.st_mtime, info.st_ctime) > RACY_WINDOW_S:
            self.used[path] = [*key, digest]
        return digest

    def save(self) -> None:
        if self.path is None or self.used == self.entries:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.path.with_suffix(f".tmp{os.getpid()}")
            temporary.write_text(json.dumps(self.used))
            os.replace(temporary, self.path)
        except OSError:
            pass  # only a cache: the next snapshot hashes again


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as source:
            while chunk := source.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise ShipError(f"--ship: cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()
