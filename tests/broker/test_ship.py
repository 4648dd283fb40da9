"""Snapshots and their delivery to a node's cache, on real files (and real git where it decides)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patas.broker.ship.code import Shipment
from patas.broker.ship.ignore import parse_rules, verdict
from patas.broker.ship.receiver import remove_tree
from patas.broker.ship.snapshot import ShipError, take_snapshot
from patas.broker.ship.transfer import Delivery, LocalTarget, Undelivered, deliver

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")
LIMIT = 1 << 30


class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[int, int]] = []
        self.deliveries = []

    def shipping(self, sent: int, total: int) -> None:
        self.progress.append((sent, total))

    def shipped(self, delivery, snapshot) -> None:  # type: ignore[no-untyped-def]
        self.deliveries.append(delivery)

    def undelivered(self, failure) -> None:  # type: ignore[no-untyped-def]
        self.deliveries.append(failure)


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, env=env).stdout


PROJECT = {
    "main.py": "print(1)\n",
    "lib/a.py": "a\n",
    "lib/build/out.o": "object\n",
    "notes.log": "log\n",
    "keep.log": "kept by !\n",
    "data/secret.txt": "left out by .patasignore\n",
    "pataslab/grid/journal.jsonl": "never shipped\n",
    ".gitignore": "*.log\n!keep.log\nbuild/\n",
    ".patasignore": "data/\n",
}
SHIPPED = [".gitignore", ".patasignore", "keep.log", "lib/a.py", "main.py"]


def test_a_plain_folder_honours_gitignore_and_patasignore_and_never_ships_the_lab(tmp_path):
    snapshot = take_snapshot(["."], tree(tmp_path, PROJECT), LIMIT)
    assert [f.path for f in snapshot.files] == SHIPPED
    assert snapshot.git is None


@needs_git
def test_a_git_work_tree_ships_what_git_lists_and_records_its_commit(tmp_path):
    root = tree(tmp_path, PROJECT)
    git(root, "init", "-q")
    git(root, "add", "main.py", ".gitignore")
    git(root, "commit", "-qm", "first")
    snapshot = take_snapshot(["."], root, LIMIT)
    assert [f.path for f in snapshot.files] == SHIPPED  # untracked files too, minus the ignored
    assert snapshot.git is not None and snapshot.git.commit == git(root, "rev-parse", "HEAD").strip()
    assert snapshot.git.dirty  # lib/a.py and others are not committed
    git(root, "add", "-A")
    git(root, "commit", "-qm", "all")
    clean = take_snapshot(["."], root, LIMIT)
    assert not clean.git.dirty and clean.digest == snapshot.digest  # same files: same digest


def test_the_digest_names_the_content_and_modes(tmp_path):
    root = tree(tmp_path, {"a.py": "x\n", "b/c.txt": "y\n"})
    first = take_snapshot(["."], root, LIMIT).digest
    assert take_snapshot(["."], root, LIMIT).digest == first
    (root / "a.py").chmod(0o755)
    assert take_snapshot(["."], root, LIMIT).digest != first
    (root / "a.py").chmod(0o644)
    (root / "b/c.txt").write_text("z\n")
    assert take_snapshot(["."], root, LIMIT).digest != first


def test_a_link_inside_the_tree_is_a_link_and_one_leading_out_is_refused(tmp_path):
    root = tree(tmp_path / "project", {"src/main.py": "x\n"})
    (root / "main.py").symlink_to("src/main.py")
    (root / "abs.py").symlink_to(root / "src/main.py")
    (root / "srcdir").symlink_to("src")
    snapshot = take_snapshot(["."], root, LIMIT)
    assert [f.path for f in snapshot.files] == ["src/main.py"]
    assert dict(snapshot.links) == {"abs.py": "src/main.py", "main.py": "src/main.py", "srcdir": "src"}
    (tmp_path / "outside.txt").write_text("secret\n")
    (root / "escape").symlink_to("../outside.txt")
    with pytest.raises(ShipError, match=r"^--ship: escape is a link to \.\./outside\.txt, outside .*add escape to \.patasignore\)$"):
        take_snapshot(["."], root, LIMIT)
    (root / ".patasignore").write_text("escape\n")
    assert "escape" not in dict(take_snapshot(["."], root, LIMIT).links)


def test_paths_that_do_not_exist_or_leave_the_folder_and_snapshots_over_the_limit_are_refused(tmp_path):
    root = tree(tmp_path / "project", {"small.txt": "x" * 10, "big.bin": "y" * 5000})
    with pytest.raises(ShipError, match=r"^--ship nope: no such file or folder"):
        take_snapshot(["nope"], root, LIMIT)
    with pytest.raises(ShipError, match=r"^--ship \.\.: outside the current folder"):
        take_snapshot([".."], root, LIMIT)
    with pytest.raises(ShipError, match=r"^--ship: 4\.9 KiB to ship, over --ship-limit 1\.0 KiB; largest: big\.bin \(4\.9 KiB\), small\.txt \(10 B\)"):
        take_snapshot(["."], root, 1024)


def test_a_named_file_is_shipped_even_if_ignored(tmp_path):
    root = tree(tmp_path, {"run.log": "x\n", ".gitignore": "*.log\n", "other.py": "y\n"})
    assert [f.path for f in take_snapshot(["run.log"], root, LIMIT).files] == ["run.log"]


def test_a_second_delivery_sends_only_what_changed_and_an_unchanged_one_nothing(tmp_path):
    root = tree(tmp_path / "project", {f"f{i}.txt": f"file {i}\n" for i in range(20)} | {"same1": "dup\n", "same2": "dup\n"})
    node = LocalTarget("node", tmp_path / "cache")
    seen = Recorder()
    first = deliver(take_snapshot(["."], root, LIMIT, tmp_path / "coordinator"), [node], seen)[0]
    assert (first.blobs_sent, first.bytes_sent) == (21, 10 * 7 + 10 * 8 + 4)  # "dup" is one blob
    assert seen.progress[-1][0] == seen.progress[-1][1] == first.bytes_sent
    (root / "f3.txt").write_text("changed\n")
    second = deliver(take_snapshot(["."], root, LIMIT, tmp_path / "coordinator"), [node], seen)[0]
    assert (second.blobs_sent, second.bytes_sent) == (1, len("changed\n"))
    third = deliver(take_snapshot(["."], root, LIMIT, tmp_path / "coordinator"), [node], seen)[0]
    assert (third.blobs_sent, third.bytes_sent) == (0, 0) and third.root == second.root
    copy = Path(second.root)
    assert (copy / "f3.txt").read_text() == "changed\n" and Path(first.root, "f3.txt").read_text() == "file 3\n"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o555 and stat.S_IMODE((copy / "f3.txt").stat().st_mode) == 0o444
    remove_tree(str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_a_node_that_cannot_keep_the_code_gets_nothing_and_the_others_get_it_all(tmp_path):
    root = tree(tmp_path / "project", {"a.txt": "a\n", "b.txt": "b\n"})
    snapshot = take_snapshot(["."], root, LIMIT)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/blobs").write_text("a file where the blob store should be")
    seen = Recorder()
    good, bad = deliver(snapshot, [LocalTarget("good", tmp_path / "cache"), LocalTarget("bad", tmp_path / "broken")], seen)
    assert isinstance(good, Delivery) and (Path(good.root) / "b.txt").read_text() == "b\n"
    assert isinstance(bad, Undelivered) and bad.node_name == "bad"
    assert bad.reason.startswith(f"cannot keep the code in {tmp_path / 'broken'}: "), bad.reason
    assert seen.deliveries == [good, bad]


def test_a_file_that_changes_while_it_is_shipped_fails_every_node_not_one(tmp_path):
    root = tree(tmp_path / "project", {"a.txt": "before\n"})
    snapshot = take_snapshot(["."], root, LIMIT)
    (root / "a.txt").write_text("after!\n")  # the source changed: no node could get it
    with pytest.raises(ShipError, match=r"^--ship: a\.txt changed while it was being shipped"):
        deliver(snapshot, [LocalTarget(f"n{i}", tmp_path / f"cache{i}") for i in range(2)], Recorder())


def test_a_file_that_changes_while_it_is_shipped_is_refused_by_name(tmp_path):
    root = tree(tmp_path / "project", {"a.txt": "before\n"})
    snapshot = take_snapshot(["."], root, LIMIT)
    (root / "a.txt").write_text("after!\n")  # same size, other bytes
    with pytest.raises(ShipError, match=r"^--ship: a\.txt changed while it was being shipped"):
        deliver(snapshot, [LocalTarget("node", tmp_path / "cache")], Recorder())
    assert not any((tmp_path / "cache/blobs").iterdir())  # nothing half-received is kept


def test_the_shipment_puts_each_experiments_workdir_inside_the_nodes_copy(tmp_path, monkeypatch):
    from patas.broker.ship.code import plan_shipment
    from patas.common.config import experiment_from_flags

    root = tree(tmp_path / "project", {"sub/run.sh": "echo\n"})
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATAS_CACHE", str(tmp_path / "cache"))
    inside = experiment_from_flags("a", ["./run.sh"], [], 1, 1, str(root / "sub"), None, (".",))
    plain = experiment_from_flags("b", ["true"], [], 1, 1, str(root), None)
    shipment = plan_shipment([inside, plain], root, LIMIT)
    assert list(shipment.snapshots) == [0] and shipment.workdirs == {0: "sub"}
    outside = experiment_from_flags("c", ["true"], [], 1, 1, str(tmp_path), None, (".",))
    with pytest.raises(ShipError, match="is outside the shipped folder"):
        plan_shipment([outside], root, LIMIT)
    assert isinstance(shipment, Shipment)


# --- the ignore rules, against git's own reading -------------------------------------------------

PATTERNS = ["*.log", "build/", "/top.txt", "a/**/z", "**/cache", "doc/*.md", "!keep.log", "x?y", "[ab].c", "deep/", "a/b"]
PATHS = ["top.txt", "sub/top.txt", "x.log", "sub/keep.log", "keep.log", "build", "sub/build", "a/z", "a/q/r/z",
         "cache", "sub/cache", "doc/r.md", "doc/sub/r.md", "xzy", "sub/xzy", "a.c", "c.c", "deep", "a/b", "q/a/b"]  # fmt: skip


@needs_git
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=4))
def test_the_rules_decide_as_git_does(tmp_path_factory, patterns):
    root = tmp_path_factory.mktemp("git")
    git(root, "init", "-q")
    (root / ".gitignore").write_text("\n".join(patterns) + "\n")
    rules = parse_rules("\n".join(patterns))
    for path in PATHS:
        is_folder = path in ("build", "sub/build", "deep", "cache", "sub/cache")
        asked = path + ("/" if is_folder else "")
        checked = subprocess.run(["git", "check-ignore", "--no-index", "-q", asked], cwd=root)
        assert (verdict(rules, path, is_folder) is True) == (checked.returncode == 0), (patterns, path)


def test_an_interrupted_stream_leaves_no_blob_and_no_snapshot_a_later_ship_would_trust(tmp_path):
    import hashlib
    import json
    import sys

    from patas.broker.ship import receiver

    data = b"x" * 100_000
    sha = hashlib.sha256(data).hexdigest()
    manifest = json.dumps({"files": [["a.bin", 0, len(data), sha]], "links": []}).encode()
    cut = b"%d\n" % len(manifest) + manifest + f"{sha} {len(data)}\n".encode() + data[:5000]  # the connection drops here
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-c", Path(receiver.__file__).read_text(), "receive", str(cache), "d" * 64],
                          input=cut, capture_output=True)  # fmt: skip
    assert done.returncode == receiver.CHANGED_STATUS and done.stderr.decode().strip() == f"changed {sha}"
    assert list((cache / "blobs").iterdir()) == [] and not (cache / "snapshots").exists()
    query = subprocess.run([sys.executable, "-c", Path(receiver.__file__).read_text(), "query", str(cache), "d" * 64],
                           input=f"{sha}\n".encode(), capture_output=True)  # fmt: skip
    assert query.returncode == 0 and query.stdout.decode() == f"{sha}\n"  # still missing: it is sent again
