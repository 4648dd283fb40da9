"""patas.common.digests: the BLAKE2b that task keys and the plan index are made with."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from patas.common.digests import blake2b


@given(data=st.lists(st.binary(max_size=300), max_size=5), size=st.integers(1, 64))
def test_the_digests_are_hashlibs_for_any_bytes_fed_in_any_pieces(data, size):
    ours, theirs = blake2b(digest_size=size), hashlib.blake2b(digest_size=size)
    for piece in data:
        ours.update(piece)
        theirs.update(piece)
    assert ours.copy().hexdigest() == theirs.hexdigest()
    assert ours.digest() == theirs.digest()


def test_a_task_key_of_an_existing_lab_is_unchanged():
    # A rerun recognises done work by its key: `echo {i}` with i=0, repeat 0, as labs have it.
    from patas.common.sweep import combination_digest, task_key

    assert task_key(combination_digest(("echo 0",), (("i", "0"),)), 0) == "eccce53892eea108a40e6e6f"
