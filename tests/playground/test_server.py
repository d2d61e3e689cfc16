"""The playground's HTTP side, through a real ``policyd playground`` process on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ALICE = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"
MALLORY = "did:plc:mallorypz3q6bx4wvk2tefhy"


def _call(
    url: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def test_the_page_and_its_assets_are_served_from_the_package(playground: str) -> None:
    status, page = _call(playground, "")
    assert status == 200
    assert "/static/vendor/cytoscape.min.js" in page
    for asset in ("playground.js", "playground.css", "vendor/cytoscape.min.js"):
        assert _call(playground, f"static/{asset}")[0] == 200


def test_open_report_check_and_around(playground: str) -> None:
    status, state = _call(playground, "api/state")
    assert status == 200
    assert (state["mode"], state["initial"]) == ("memory", "social.test.yaml")
    _, opened = _call(playground, "api/open", {"path": "social.test.yaml"})
    scenario = opened["documents"][0]["scenario"]
    _, report = _call(playground, "api/report", {"scenario": scenario})
    assert report["summary"] == "ok: 26 assertions passed"
    query = f"post:at://{ALICE}/app.bsky.feed.post/3kgpub2a2cs2x#view_public@account:{MALLORY}"
    _, answer = _call(playground, "api/check", {"scenario": scenario, "query": query})
    assert answer["permissionship"] == "no_permission"
    assert any("removes" in n["classes"] for n in answer["graph"]["nodes"])
    _, graph = _call(
        playground, "api/around", {"scenario": scenario, "object": f"account:{MALLORY}"}
    )
    assert graph["nodes"][0]["id"] == f"account:{MALLORY}"


def test_errors_are_answers_not_crashes(playground: str) -> None:
    _, opened = _call(playground, "api/open", {"path": "social.test.yaml"})
    scenario = opened["documents"][0]["scenario"]
    status, body = _call(playground, "api/check", {"scenario": scenario, "query": "nope"})
    assert (status, body["error"]) == (400, "invalid-request")
    status, body = _call(playground, "api/open", {"path": "../../etc/passwd"})
    assert status == 400
    bad: dict[str, Any]
    for bad in (
        {"policy": 1},
        {"leads": []},
        {"leads": {"schema": 2}},
        {"schema_file": 3},
        {"x": ""},
    ):
        status, _ = _call(playground, "api/report", {"scenario": bad})
        assert status == 400, bad


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example:80"},
        {"Origin": "http://evil.example"},
        {"Content-Type": "text/plain"},
    ],
    ids=["other-host", "other-origin", "not-json"],
)
def test_requests_from_other_sites_are_refused(
    playground: str, policies: Path, headers: dict[str, str]
) -> None:
    before = (policies / "social.test.yaml").read_text(encoding="utf-8")
    status, _ = _call(playground, "api/save", {"path": "social.test.yaml", "scenario": {}}, headers)
    assert status in (403, 415)
    assert (policies / "social.test.yaml").read_text(encoding="utf-8") == before
