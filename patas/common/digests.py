"""BLAKE2b, the digest behind task keys and the plan index, without loading OpenSSL.

`import hashlib` loads OpenSSL's libcrypto for the constructors it offers (~5 ms, on the path of
every run), and task keys need none of them: hashlib's own `blake2b` is CPython's built-in
`_blake2`, taken here directly. The digests are the same either way.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # a Python built without its own BLAKE2: hashlib then has it from OpenSSL
    from hashlib import blake2b  # type: ignore[assignment]

__all__ = ["blake2b"]
