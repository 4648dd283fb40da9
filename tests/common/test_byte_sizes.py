import pytest

from patas.common.byte_sizes import parse_size, size_text
from patas.common.errors import ConfigError


def test_sizes_read_and_shown_in_powers_of_1024():
    assert [parse_size(t, "--collect-limit") for t in ("1000", "1K", "500M", "500mb", "2g", "4GB", "1.5GiB", "1TB")] == [
        1000, 1024, 500 * 2**20, 500 * 2**20, 2 * 2**30, 4 * 2**30, 3 * 2**29, 2**40,
    ]  # fmt: skip
    assert [size_text(n) for n in (5, 3072, 2**30 + 2**29)] == ["5 B", "3.0 KiB", "1.5 GiB"]
    for bad in ("", "x", "1X", "-1M", "0"):
        with pytest.raises(ConfigError, match="--collect-limit"):
            parse_size(bad, "--collect-limit")
