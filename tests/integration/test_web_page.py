"""The web page (api/static/) in a real headless chromium against the API over HTTPS on 127.0.0.1.

Uses Debian's chromium through Playwright. On a fresh machine running as root, the test installs
it with apt-get (bounded in time); where no browser can be had it skips and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_api import api_server

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
INSTALL_TIMEOUT_S = 420
SCREENSHOT_DIR = os.environ.get("ACCEL_SCREENSHOT_DIR")  # set it to keep a screenshot of the page


def _ensure_chromium() -> str | None:
    """Why no browser is available, or None when /usr/bin/chromium is there (installed if need be)."""
    if Path(CHROMIUM).exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
            "apt-get install -y chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(
            ["apt-get", "update", "-qq"], check=True, timeout=INSTALL_TIMEOUT_S, capture_output=True, env=env
        )
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
            capture_output=True,
            env=env,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        why = type(exc).__name__
        return f"could not install chromium with apt-get ({why}); install it to run the browser test"
    return None if Path(CHROMIUM).exists() else "apt-get ran but /usr/bin/chromium is still missing"


@pytest.fixture(scope="module")
def chromium_path() -> str:
    reason = _ensure_chromium()
    if reason:
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def page(chromium_path: str) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = await browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        await browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


async def test_page_shows_profiles_nodes_drafts_and_estimates(tmp_path: Path, page: object) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    async with api_server(tmp_path) as srv:
        await page.goto(srv.base + "/")
        cards = page.locator(".card")
        await expect(cards).to_have_count(2)  # anonymous: profiles every team may use
        await expect(page.locator("#identity")).to_contain_text("Viewing as anonymous")
        await expect(page.locator('.card[data-profile="notebook-shared"] .headline')).to_contain_text(
            "replicas available"
        )
        await expect(page.locator("#status")).to_contain_text("Cluster state observed")

        await page.click("details.token summary")
        await page.fill("#token", "nlp-token")
        await page.click("#token-apply")
        await expect(cards).to_have_count(6)
        await expect(page.locator("#identity")).to_contain_text("Viewing as alice team nlp")
        await expect(page.locator('.card[data-profile="premium-h200"] h3')).to_have_text(
            "Premium GPU (NVIDIA H200 141GB)"
        )

        await page.select_option("#type-filter", "nvidia-h100-80gb")
        await expect(page.locator("#nodes tbody tr")).to_have_count(5)
        await page.click('th[data-sort="free"]')
        await page.click('th[data-sort="free"]')
        await expect(page.locator('th[data-sort="free"]')).to_have_attribute("aria-sort", "descending")
        frees = [float(t) for t in await page.locator("#nodes tbody tr td:nth-child(5)").all_inner_texts()]
        assert frees == sorted(frees, reverse=True)

        await page.check('tr[data-node="gpu-h100-01"] input')
        await page.check('tr[data-node="gpu-h100-02"] input')
        await expect(page.locator("#selected-count")).to_have_text("2 selected")
        await page.fill("#draft-name", "h100-pool")
        await page.click("#draft")
        await expect(page.locator("#draft-yaml")).to_contain_text("name: h100-pool")
        await expect(page.locator("#draft-yaml")).to_contain_text("type: nvidia-h100-80gb")

        await page.fill('input[name="model"]', "llama-3-70b")
        await page.fill('input[name="tokens"]', "2e12")
        await page.fill('input[name="gpus"]', "64")
        await page.click('#estimate-form button[type="submit"]')
        rows = page.locator("#estimates tbody tr")
        await expect(rows.first).to_be_visible()
        assert await rows.count() == 6
        assert (await rows.first.locator("td").first.inner_text()) == "1"
        await expect(page.locator("#assumptions")).to_be_visible()
        if SCREENSHOT_DIR:
            await page.screenshot(path=str(Path(SCREENSHOT_DIR) / "accel-web-page.png"), full_page=True)

        await page.fill('input[name="tokens"]', "-5")
        await page.click('#estimate-form button[type="submit"]')
        await expect(page.locator("#estimate-error")).to_contain_text("tokens")
        await expect(page.locator("#estimates")).to_be_hidden()


async def test_page_says_it_shows_the_local_dev_identity(tmp_path: Path, page: object) -> None:
    """`accel serve api --snapshot ... --dev-identity team:nlp`: the page is nlp's, and says so."""
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    async with api_server(tmp_path, dev_identity=("team:nlp",)) as srv:
        await page.goto(srv.base + "/")
        await expect(page.locator(".card")).to_have_count(6)
        identity = page.locator("#identity")
        await expect(identity).to_contain_text("Viewing as team nlp [team:nlp]")
        await expect(identity).to_contain_text("development identity")
