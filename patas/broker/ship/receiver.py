"""The node's side of shipping: its cache of blobs and snapshots. Standard library only, Python
>= 3.9: the coordinator runs this file's text with `python3 -c` over SSH, and imports it for
nodes on its own machine.

    <cache>/blobs/<sha256>[.x]       one file per content (".x": executable), read-only
    <cache>/snapshots/<digest>/      a snapshot's tree, read-only, its files hard links to blobs

    python3 -c SOURCE query CACHE DIGEST      stdin: blob names, one a line; stdout: "complete"
                                              if the snapshot is there, else the missing names
    python3 -c SOURCE receive CACHE DIGEST    stdin: "<manifest size>\n<manifest>" and then
                                              "<blob name> <size>\n<bytes>" per blob; stores
                                              each blob once its digest checks, then builds
                                              the snapshot beside its final name and renames it

A blob is renamed into place only once its digest is checked, and a snapshot folder only once
it is whole, so an interrupted transfer leaves nothing that a later one would trust.
"""

import errno
import hashlib
import json
import os
import shutil
import sys

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_STATUS = 28  # exit status for a full disk, free bytes on stderr (as the agent install)
CHANGED_STATUS = 4  # a blob's bytes are not those its name says: stderr names it
CHUNK_BYTES = 1 << 20
BLOB_MODES = {False: 0o444, True: 0o555}
FOLDER_MODE = 0o555


def blob_path(cache, name):
    return os.path.join(cache, "blobs", name)


def snapshot_path(cache, digest):
    return os.path.join(cache, "snapshots", digest)


def missing(cache, digest, names):
    """None when the snapshot is complete there, else the blobs the node lacks."""
    if os.path.isdir(snapshot_path(cache, digest)):
        return None
    return [name for name in names if not os.path.exists(blob_path(cache, name))]


class BlobChanged(Exception):
    """The bytes received for a blob do not have its digest."""


def store_blob(cache, name, size, read):
    """Store `size` bytes from `read(n)` as blob `name`, if their digest is the name's."""
    final = blob_path(cache, name)
    folder = os.path.dirname(final)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    temporary = "%s.tmp%d" % (final, os.getpid())
    check, left = hashlib.sha256(), size
    try:
        with open(temporary, "wb") as out:
            while left:
                chunk = read(min(left, CHUNK_BYTES))
                if not chunk:
                    break
                check.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        if left or check.hexdigest() != name.split(".")[0]:
            raise BlobChanged(name)
        os.chmod(temporary, BLOB_MODES[name.endswith(".x")])
        os.rename(temporary, final)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def materialise(cache, digest, manifest):
    """Build the snapshot from its blobs under a temporary name, then rename it into place."""
    final = snapshot_path(cache, digest)
    if os.path.isdir(final):
        return
    temporary = "%s.tmp%d" % (final, os.getpid())
    os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
    try:
        os.mkdir(temporary, 0o700)
        made = {temporary}  # folders made so far: one makedirs per folder, not per file
        for path, executable, _size, sha in manifest["files"]:
            target = _inside(temporary, path, made)
            _link_or_copy(blob_path(cache, sha + (".x" if executable else "")), target)
        for path, link in manifest["links"]:
            os.symlink(link, _inside(temporary, path, made))
        _freeze(temporary)
        try:
            os.rename(temporary, final)
        except OSError:
            if not os.path.isdir(final):  # not a concurrent ship of the same snapshot
                raise
    finally:
        if os.path.lexists(temporary):
            remove_tree(temporary)


def _inside(folder, path, made):
    """The path in the snapshot's folder, its parent folder made; never a path leaving it."""
    full = os.path.normpath(os.path.join(folder, path))
    if not full.startswith(folder + os.sep):
        raise ValueError("path leaves the snapshot: %r" % path)
    parent = os.path.dirname(full)
    if parent not in made:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        made.add(parent)
    return full


def _link_or_copy(blob, target):
    try:
        os.link(blob, target)
    except OSError as error:
        if error.errno not in (errno.EMLINK, errno.EXDEV, errno.EPERM):
            raise
        shutil.copy2(blob, target)  # the blob has as many links as its filesystem allows


def _freeze(folder):
    for here, _subfolders, _files in os.walk(folder, topdown=False):
        os.chmod(here, FOLDER_MODE)


def remove_tree(folder):
    """Remove a (read-only) snapshot folder."""
    for here, _subfolders, _files in os.walk(folder):
        os.chmod(here, 0o700)
    shutil.rmtree(folder, ignore_errors=True)


def _receive(cache, digest, stream):
    manifest = json.loads(stream.read(int(stream.readline())))
    while True:
        header = stream.readline()
        if not header:
            break
        name, size = header.split()
        store_blob(cache, name.decode(), int(size), stream.read)
    materialise(cache, digest, manifest)


def _full(error, folder):
    if getattr(error, "errno", None) in DISK_FULL:
        while not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        free = os.statvfs(folder)
        sys.stderr.write("%d\n" % (free.f_bavail * free.f_frsize))
        sys.exit(DISK_FULL_STATUS)


def main(arguments):
    command, cache, digest = arguments
    cache = os.path.expanduser(cache)
    try:
        if command == "query":
            names = sys.stdin.read().split()
            lacking = missing(cache, digest, names)
            sys.stdout.write("complete\n" if lacking is None else "".join(n + "\n" for n in lacking))
        else:
            _receive(cache, digest, sys.stdin.buffer)
    except BlobChanged as error:
        sys.stderr.write("changed %s\n" % error)
        sys.exit(CHANGED_STATUS)
    except OSError as error:
        _full(error, cache)
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
