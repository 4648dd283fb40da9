from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.dashboard.served import browser_or_skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's tests (starting one costs seconds)."""
    driver = browser_or_skip()
    try:
        yield driver
    finally:
        driver.quit()
