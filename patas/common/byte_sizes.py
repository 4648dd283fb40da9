"""Sizes in bytes as people write and read them: `--ship-limit 4GB`, `--collect-limit 500M`,
"12.5 MiB to ship". K, M, G and T are powers of 1024, with or without a trailing `B` or `iB`."""

from __future__ import annotations

import re

from patas.common.errors import ConfigError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*\Z", re.IGNORECASE)


def parse_size(text: str, where: str) -> int:
    """Bytes in a size such as `500M`, `2G`, `4GB`, `1.5GiB` or `1000`; `where` names the option
    or key in the error."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"{where} {text!r}: expected a size such as 500M, 2G or 1000000 (bytes)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 1:
        raise ConfigError(f"{where} {text!r}: must be at least 1 byte")
    return size


def size_text(size: float) -> str:
    """A byte count for people: `512 B`, `3.0 KiB`, `1.2 GiB`."""
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"
