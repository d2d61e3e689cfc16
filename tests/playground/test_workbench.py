"""The workbench: diagnostics where the author typed them, outcomes as policyd validate gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.errors import InvalidRequestError, PolicydError
from policyd.playground.backends import MemoryBackend, parse_relationship_lines
from policyd.playground.scenario import Scenario, parse_scenario, split_documents
from policyd.playground.workbench import Workbench, parse_context, parse_query

POLICIES = Path(__file__).resolve().parents[2] / "policies"
ALICE = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"
MALLORY = "did:plc:mallorypz3q6bx4wvk2tefhy"
PUBLIC_POST = f"post:at://{ALICE}/app.bsky.feed.post/3kgpub2a2cs2x"


@pytest.fixture
def social() -> Scenario:
    text = (POLICIES / "social.test.yaml").read_text(encoding="utf-8")
    return parse_scenario(split_documents(text)[0], "social.test.yaml", POLICIES)


@pytest.fixture
def workbench() -> Workbench:
    return Workbench(MemoryBackend())


def test_the_example_passes_as_policyd_validate_says(
    workbench: Workbench, social: Scenario
) -> None:
    report = workbench.report(social)
    assert report.ran
    assert report.diagnostics == ()
    assert report.summary == "ok: 26 assertions passed"
    first = report.outcomes[0]
    assert (first.pane, first.line, first.passed) == ("assertions", 3, True)
    assert first.query == f"{PUBLIC_POST}#view_public@account:did:plc:erinw3bx7zo2kq5vhyfmc6ld"
    assert [o.pane for o in report.outcomes[-2:]] == ["validation", "validation"]


def test_a_policy_error_is_at_its_line_and_column_of_the_policy_pane(
    workbench: Workbench, social: Scenario
) -> None:
    social.policy = social.policy.replace(
        "permission see_followers_only = follower - blocked",
        "permission see_followers_only = follower - blockd",
    )
    report = workbench.report(social)
    assert not report.ran
    (d,) = report.diagnostics
    assert (d.pane, d.line, d.column, d.code) == ("policy", 17, 48, "unknown-relation")
    line = social.policy.split("\n")[d.line - 1]
    assert line[d.column - 1 :].startswith("blockd")


def test_bad_relationship_and_assertion_lines_are_reported_where_they_are(
    workbench: Workbench, social: Scenario
) -> None:
    social.relationships += "\n  foo:bar#baz@qux:1"
    social.assertions = social.assertions.replace("assertTrue:", "assertTrue:\n  - bogus", 1)
    report = workbench.report(social)
    found = {(d.pane, d.line, d.column, d.code) for d in report.diagnostics}
    bad_line = len(social.relationships.split("\n"))
    assert found == {
        ("relationships", bad_line, 3, "invalid-relationship"),
        ("assertions", 2, 5, "invalid-relationship"),
    }
    assert report.outcomes == ()


def test_a_failing_assertion_is_an_outcome_with_the_message(
    workbench: Workbench, social: Scenario
) -> None:
    social.assertions = social.assertions.replace(
        "assertFalse:\n", f"assertFalse:\n  - {PUBLIC_POST}#view_public@account:did:web:x.com\n", 1
    )
    report = workbench.report(social)
    failed = [o for o in report.outcomes if not o.passed]
    assert len(failed) == 1
    assert "expected no_permission, got has_permission" in failed[0].message
    assert social.assertions.split("\n")[failed[0].line - 1].endswith("did:web:x.com")
    assert report.summary == "1 of 27 assertions failed"


def test_the_check_box_explains_why_a_blocked_account_cannot_see_a_post(
    workbench: Workbench, social: Scenario
) -> None:
    answer = workbench.check(social, f"{PUBLIC_POST}#view_public@account:{MALLORY}", "")
    assert answer.permissionship == "no_permission"
    assert "author->blocked" in answer.text
    removes = [n for n in answer.graph.nodes if "removes" in n.classes]
    assert any(n.detail.endswith(f"#blocked@account:{MALLORY}") for n in removes)


def test_the_check_box_takes_caveat_context(workbench: Workbench) -> None:
    text = (POLICIES / "social.test.yaml").read_text(encoding="utf-8")
    paid = parse_scenario(split_documents(text)[3], "social.test.yaml", POLICIES)
    query = f"creator:{ALICE}#gold_content@account:did:plc:dav3pu7tgklzyh4sy2mzxq5e"
    assert workbench.check(paid, query, "").missing == ("now",)
    answer = workbench.check(paid, query, '{"now": "2026-01-01T00:00:00Z"}')
    assert answer.permissionship == "has_permission"


def test_the_check_box_refuses_a_broken_policy(workbench: Workbench, social: Scenario) -> None:
    social.policy += "\ndefinition {"
    with pytest.raises(PolicydError):
        workbench.check(social, f"{PUBLIC_POST}#view_public@account:{MALLORY}", "")


@pytest.mark.parametrize("query", ["post:1#view", "post:1@user:a", "#view@user:a", "post:1#view@"])
def test_malformed_queries_are_refused(query: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_query(query)


@pytest.mark.parametrize("context", ["[1]", "{", '"now"'])
def test_malformed_context_is_refused(context: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_context(context)


def test_relationships_around_an_object(workbench: Workbench, social: Scenario) -> None:
    graph = workbench.around(social, f"account:{MALLORY}", 1)
    assert graph.nodes[0].id == f"account:{MALLORY}"
    assert {e.label for e in graph.edges} == {"follower", "following", "close_friend", "blocked"}


def test_relationship_lines_skip_comments_and_blank_lines() -> None:
    found, problems = parse_relationship_lines("// c\n\ndoc:1#viewer@user:a\n  nope", None)
    assert [str(r) for r in found] == ["doc:1#viewer@user:a"]
    assert [(line, column) for line, column, _ in problems] == [(4, 3)]
