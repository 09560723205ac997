"""A real headless Chromium (Debian's ``chromium``) driven by Playwright for Python.

Playwright cannot download its own browsers here: it drives the system Chromium through
``executable_path``. No Chromium or no Playwright skips locally and fails in CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.services import missing

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    given = os.environ.get("LUNA_STREAMS_CHROMIUM")
    if given:
        return given
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        missing("no Chromium: apt-get install chromium chromium-driver")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("Playwright for Python is not installed (the dev extras have it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()
