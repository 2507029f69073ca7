"""A whole review in real headless Chromium (Debian's), driven by Playwright against ``research-kit serve``.

Two committee members sign in one after the other, find the flagged cell and read its reason (by keyboard
focus and by hover), approve, release, and download the bundle. Screenshots of the main pages are kept in
``test-artifacts/web/`` (``RK_TEST_ARTIFACTS`` moves it).

Chromium is Debian's package (``.ci/run`` installs it where missing); Playwright's own browser download
does not work on this machine. Without it the test is skipped with the reason, unless
``RK_REQUIRE_BROWSER=1`` (set by CI), where a missing browser fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.functional.webapp import PASSWORD, S1, SCRIPT, running_server

from research_kit.core.workspace import Workspace
from research_kit.review import requests as review

CHROMIUM = os.environ.get("RK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RK_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts") / "web"
# Flags for a closed network and a root user (see the machine's notes): no sandbox, no background calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("RK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set RK_CHROMIUM)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium to run the browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        dialogs: list[str] = []
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        try:
            yield tab
        finally:
            context.close()
            browser.close()
        assert dialogs == [], f"a script ran in the page: {dialogs}"


def shot(tab: object, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)  # type: ignore[attr-defined]


def sign_in(tab, base: str, name: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    tab.goto(f"{base}/")
    expect(tab).to_have_url(f"{base}/signin?next=/")
    tab.get_by_label("User name").fill(name)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_label("Password").press("Enter")  # by keyboard
    expect(tab.get_by_role("heading", name="Review requests")).to_be_visible()


def sign_out(tab) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    tab.get_by_role("button", name="Sign out").click()
    expect(tab.get_by_role("heading", name="Sign in")).to_be_visible()


def approve_all(tab, comment: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    tab.get_by_label("Approve the outputs ticked below").check()
    tab.get_by_label("Comment (needed to return", exact=False).fill(comment)
    tab.get_by_role("button", name="Record my vote").click()
    expect(tab.get_by_role("status")).to_have_text("Your vote is recorded.")


@pytest.mark.slow  # a browser, ~15 s
def test_a_whole_review_in_chromium(page: object, review_ws: Workspace, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    tab = page
    small = review.output(review.get(review_ws, S1), "small")
    with running_server(review_ws) as base:
        tab.goto(f"{base}/")  # type: ignore[attr-defined]
        shot(tab, "1-signin")
        sign_in(tab, base, "carla")
        shot(tab, "2-queue")
        tab.get_by_role("link", name=f"Request {S1}").click()  # type: ignore[attr-defined]
        expect(tab.get_by_role("heading", name=f"Request {S1}: study s1")).to_be_visible()  # type: ignore[attr-defined]

        # The flagged cell: its reason is hidden until the cell has keyboard focus, or the pointer over it.
        cell = tab.locator(f"#o{small.id}-r1-c1")  # type: ignore[attr-defined]
        why = tab.locator(f"#o{small.id}-r1-c1-why")  # type: ignore[attr-defined]
        expect(cell).to_have_class("flagged sev-fail num")
        expect(why).to_be_hidden()
        cell.focus()
        expect(why).to_be_visible()
        expect(why).to_contain_text("threshold")
        expect(why).to_contain_text("fewer than the minimum 10")
        assert cell.evaluate("c => getComputedStyle(c).backgroundColor") != "rgba(0, 0, 0, 0)"
        cell.scroll_into_view_if_needed()
        shot(tab, "3-request-flagged-cell", full_page=False)
        cell.blur()
        tab.mouse.move(0, 0)  # type: ignore[attr-defined]
        expect(why).to_be_hidden()
        cell.hover()
        expect(why).to_be_visible()
        # A table cell holding markup shows it as text, and no script ran (the fixture fails on any dialog).
        expect(tab.get_by_role("cell", name=SCRIPT)).to_be_visible()  # type: ignore[attr-defined]

        approve_all(tab, "3 is a published figure of the 2024 national report")
        shot(tab, "4-request-after-one-vote")
        sign_out(tab)

        sign_in(tab, base, "chen")
        tab.goto(f"{base}/requests/{S1}")  # type: ignore[attr-defined]
        approve_all(tab, "agreed")
        release = tab.get_by_role("button", name="Release")  # type: ignore[attr-defined]
        expect(release).to_be_visible()
        release.click()
        expect(tab.get_by_role("status")).to_have_text("Released: the bundle is ready to download.")  # type: ignore[attr-defined]
        with tab.expect_download() as download:  # type: ignore[attr-defined]
            tab.get_by_role("link", name="Download the released bundle").click()  # type: ignore[attr-defined]
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        shot(tab, "5-request-released")

        tab.get_by_role("link", name="Privacy budgets").click()  # type: ignore[attr-defined]
        expect(tab.get_by_role("heading", name="Study s1")).to_be_visible()  # type: ignore[attr-defined]
        shot(tab, "6-budgets")
        tab.get_by_role("link", name="Audit log").click()  # type: ignore[attr-defined]
        tab.get_by_role("button", name="Verify the chain").click()  # type: ignore[attr-defined]
        expect(tab.get_by_role("status")).to_contain_text("The chain is intact")  # type: ignore[attr-defined]
        expect(tab.get_by_role("cell", name="release.create")).to_be_visible()  # type: ignore[attr-defined]
        shot(tab, "7-audit")

    assert saved.name == "request-1-s1.zip"
    with zipfile.ZipFile(saved) as z:
        names = set(z.namelist())
        assert {"SUMMARY.md", "results.json", "checksums.sha256", "outputs/make/small.csv"} <= names
        assert "outputs/make/ids.csv" not in names  # gated: never released
        for line in z.read("checksums.sha256").decode().splitlines():
            digest, name = line.split("  ")
            assert hashlib.sha256(z.read(name)).hexdigest() == digest
        summary = z.read("SUMMARY.md").decode()
    assert "approved by: carla, chen" in summary
    assert review.get(review_ws, S1).state == "released"
