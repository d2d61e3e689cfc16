"""The playground in a real browser: Debian's headless Chromium driven by Playwright.

The new author's path: open the page on ``policies/social.test.yaml``, see the
assertions pass, break the policy and see the diagnostic at its line, ask why
a blocked account cannot see a post and get the graph, look at the
relationships around her, change an assertion and save a file that
``policyd validate`` accepts. Each step leaves a screenshot in
``test-artifacts/playground/`` (or ``$POLICYD_TEST_ARTIFACTS``), which CI keeps.

Chromium comes from Debian (``.ci/run`` installs it; ``$POLICYD_CHROMIUM``
points elsewhere); without it these tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from policyd.cli import main

CHROMIUM = os.environ.get("POLICYD_CHROMIUM", "/usr/bin/chromium")
# The flags that work on these machines (no sandbox as root, no network but loopback).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = (
    Path(
        os.environ.get(
            "POLICYD_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
        )
    )
    / "playground"
)
ALICE = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"
MALLORY = "did:plc:mallorypz3q6bx4wvk2tefhy"
PUBLIC_POST = f"post:at://{ALICE}/app.bsky.feed.post/3kgpub2a2cs2x"


def _browse(url: str, profile: Path) -> Iterator[Page]:
    """A fresh headless Chromium profile showing ``url``; no script error may happen there."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1600, "height": 1000},
            accept_downloads=True,
        )
        errors: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        yield page
        context.close()
    assert not errors, errors


@pytest.fixture
def page(playground: str, tmp_path: Path) -> Iterator[Page]:
    """The playground on social.test.yaml, its assertions reported."""
    for page in _browse(playground, tmp_path / "profile"):
        page.wait_for_selector("#summary.ok")
        yield page


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _reported(page: Page) -> None:
    """Wait for the report that follows the last edit."""
    seen = page.get_attribute("body", "data-reported")
    page.wait_for_function("(seen) => document.body.dataset.reported !== seen", arg=seen)


def test_the_example_loads_and_its_assertions_pass(page: Page) -> None:
    assert page.input_value("#path") == "social.test.yaml"
    assert page.text_content("#summary") == "ok: 26 assertions passed"
    options = page.locator("#document option").all_text_contents()
    assert options[0].startswith("1. audiences")
    assert page.locator("#outcomes li.failed").count() == 0
    _shot(page, "loaded")


def test_a_broken_policy_shows_its_diagnostic_at_the_line(page: Page) -> None:
    policy = page.locator('.editor[data-pane="policy"] textarea')
    text = policy.input_value()
    policy.fill(text.replace("follower - blocked", "follower - blockd", 1))
    page.wait_for_selector("#diagnostics li")
    diagnostic = page.text_content("#diagnostics li") or ""
    assert diagnostic.startswith("policy:17:48: unknown-relation:")
    gutter = page.locator('.editor[data-pane="policy"] .gutter div').nth(16)
    assert gutter.get_attribute("class") == "error"
    assert page.text_content('button[data-pane="policy"] .count') == "1"
    assert page.text_content("#summary") == "fix the policy to run the assertions"
    page.click("#diagnostics li")  # puts the cursor on the diagnostic
    at = page.evaluate("() => document.activeElement.selectionStart")
    assert policy.input_value()[at:].startswith("blockd")
    _shot(page, "diagnostic")


def test_why_a_blocked_account_cannot_see_a_post_is_a_graph(page: Page) -> None:
    page.fill("#query", f"{PUBLIC_POST}#view_public@account:{MALLORY}")
    page.click("#check")
    page.wait_for_selector('#graph[data-kind="decision"]')
    assert page.text_content("#answer") == "no permission"
    drawn = page.evaluate(
        """() => ({
            removes: state.cy.nodes('.removes').map((n) => n.data('detail')),
            subtracts: state.cy.edges('.subtracts').length,
            root: state.cy.nodes()[0].hasClass('denied'),
        })"""
    )
    assert drawn["root"]
    assert drawn["subtracts"] == 1
    assert f"relationship account:{ALICE}#blocked@account:{MALLORY}" in drawn["removes"]
    _shot(page, "decision-graph")
    page.click('.graph-tabs button[data-graph="relationships"]')
    page.wait_for_selector('#graph[data-kind="relationships"]')
    assert int(page.get_attribute("#graph", "data-nodes") or 0) >= 3
    _shot(page, "relationship-graph")


def test_an_assertion_outcome_opens_its_check(page: Page) -> None:
    page.click("#outcomes li >> nth=0")
    page.wait_for_selector('#graph[data-kind="decision"]')
    assert page.text_content("#answer") == "has permission"
    assert page.input_value("#query").endswith(
        "#view_public@account:did:plc:erinw3bx7zo2kq5vhyfmc6ld"
    )


def test_a_changed_scenario_saves_as_a_file_policyd_validate_accepts(
    page: Page, policies: Path
) -> None:
    page.click('button[data-pane="assertions"]')
    assertions = page.locator('.editor[data-pane="assertions"] textarea')
    added = f"{PUBLIC_POST}#view_public@account:did:web:mallory.example.com"
    assertions.fill(
        assertions.input_value().replace("assertTrue:\n", f"assertTrue:\n  - {added}\n")
    )
    _reported(page)
    assert page.text_content("#summary") == "ok: 27 assertions passed"
    page.click("#save")
    page.wait_for_selector("#status.ok")
    status = page.text_content("#status") or ""
    assert status.startswith("saved social.test.yaml — policyd validate: ok:")
    _shot(page, "saved")
    saved = policies / "social.test.yaml"
    assert added in saved.read_text(encoding="utf-8")
    assert main(["validate", str(saved)]) == 0


def test_a_download_stands_alone(page: Page, tmp_path: Path) -> None:
    with page.expect_download() as info:
        page.click("#download")
    target = tmp_path / "downloaded.test.yaml"
    info.value.save_as(target)
    text = target.read_text(encoding="utf-8")
    assert text.count("schema: |-") == 1
    assert "schemaFile" not in text
    assert main(["validate", str(target)]) == 0


def test_a_server_is_read_only_and_answers_the_assertions(
    server_playground: str, tmp_path: Path
) -> None:
    for page in _browse(server_playground, tmp_path / "profile"):
        assert (page.text_content("#mode") or "").startswith("read-only: 127.0.0.1:")
        policy = page.locator('.editor[data-pane="policy"] textarea')
        assert policy.get_attribute("readonly") is not None
        assert page.is_disabled("#save")
        page.fill("#path", "social.test.yaml")
        page.click("#open")
        page.locator("#summary", has_text="24 assertions").wait_for()
        summary = page.text_content("#summary") or ""
        assert summary.startswith("ok: 24 assertions passed; expected relations are run")
        assert "definition account" in policy.input_value()  # the server's, not the file's
        page.fill("#query", f"{PUBLIC_POST}#view_public@account:{MALLORY}")
        page.click("#check")
        page.wait_for_selector('#graph[data-kind="decision"]')
        assert page.text_content("#answer") == "no permission"
        _shot(page, "server")
