"""Package workbench answers the playground's questions about a scenario: errors, outcomes.

Every answer comes from the code ``policyd validate`` runs, so the playground
and the command line cannot disagree: the policy pane is compiled by the
compiler, each relationship line is checked by the store's validator, and
the assertions and expected relations are loaded and run by
``policyd.validationfile`` on the scenario written out as a validation file
(its diagnostics are moved back to the pane and line they came from).
Checks and relationship graphs go to a ``Backend``: an in-memory engine over
the panes, or a running server's data.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from policyd.decisions import CheckResult, Permissionship
from policyd.dsl.compiler import CompiledPolicy, compile_policy
from policyd.engine import format_explanation
from policyd.errors import (
    Diagnostic,
    InvalidRequestError,
    PolicydError,
    PolicyErrors,
    PolicySyntaxError,
    Severity,
    SourceSpan,
)
from policyd.playground.backends import Backend, parse_relationship_lines
from policyd.playground.graph import Graph, explanation_graph, relationship_graph
from policyd.playground.scenario import INDENT, Scenario, render_scenario
from policyd.relationship import ObjectRef, SubjectRef, parse_object, parse_subject
from policyd.validationfile import (
    Assertion,
    AssertionKind,
    ValidationFile,
    load_validation_files,
    run_validation_file,
)

SCENARIO_FILE = "scenario.yaml"
PANES = ("policy", "relationships", "assertions", "validation")


@dataclass(frozen=True, slots=True)
class PaneDiagnostic:
    """A diagnostic at a line and column of one pane (1-based); ``pane`` "file" for the rest."""

    pane: str
    line: int
    column: int
    code: str
    message: str
    severity: str = Severity.ERROR.value


@dataclass(frozen=True, slots=True)
class Outcome:
    """One assertion or expected-relations block and whether it held.

    ``query`` and ``context`` are the check an assertion asks, for the check box.
    """

    pane: str
    line: int
    text: str
    passed: bool
    message: str = ""
    query: str = ""
    context: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the panes show after an edit: diagnostics, outcomes and a summary line."""

    diagnostics: tuple[PaneDiagnostic, ...]
    outcomes: tuple[Outcome, ...]
    summary: str
    ran: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to the check box, with the explanation as text and as a graph."""

    permissionship: str
    missing: tuple[str, ...]
    text: str
    graph: Graph


def parse_query(query: str) -> tuple[ObjectRef, str, SubjectRef]:
    """``resource#permission@subject`` as its parts.

    Raises:
        InvalidRequestError: the text is not of that form or a part is malformed.
    """
    resource_text, at, subject_text = query.strip().partition("@")
    resource_part, hash_, permission = resource_text.rpartition("#")
    if not at or not hash_ or not permission or not subject_text:
        raise InvalidRequestError(
            f"expected resource#permission@subject, got {query!r}", field="query"
        )
    return parse_object(resource_part, "resource"), permission, parse_subject(subject_text)


def parse_context(text: str) -> dict[str, Any]:
    """Caveat context typed as a JSON object; blank is empty.

    Raises:
        InvalidRequestError: the text is not a JSON object.
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRequestError(f"the context is not JSON: {e.msg}", field="context") from e
    if not isinstance(value, dict):
        raise InvalidRequestError("the context must be a JSON object", field="context")
    return value


def lint_policy(text: str) -> tuple[CompiledPolicy | None, list[PaneDiagnostic]]:
    """Compile the policy pane: the compiled policy if it has no errors, and every diagnostic."""
    try:
        compiled = compile_policy(text, "policy")
    except PolicySyntaxError as e:
        assert e.span is not None
        return None, [_in_pane("policy", Diagnostic(e.span, e.code, e.message))]
    except PolicyErrors as e:
        return None, [_in_pane("policy", d) for d in e.diagnostics]
    return compiled, [_in_pane("policy", d) for d in compiled.warnings]


def _in_pane(
    pane: str, d: Diagnostic, line_offset: int = 0, column_offset: int = 0
) -> PaneDiagnostic:
    return PaneDiagnostic(
        pane,
        d.span.line - line_offset,
        max(d.span.column - column_offset, 1),
        d.code,
        d.message,
        d.severity.value,
    )


class Workbench:
    """The playground's answers for one backend (an in-memory engine, or a server)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def report(self, scenario: Scenario) -> Report:
        """Diagnostics for every pane, then, if there are no errors, every assertion's outcome."""
        compiled, diagnostics = lint_policy(scenario.policy)
        if self.backend.read_only:  # the pane shows a sample of the server's relationships
            scenario = replace(scenario, relationships="")
        schema = compiled.schema if compiled is not None else None
        _, problems = parse_relationship_lines(scenario.relationships, schema)
        diagnostics += [
            PaneDiagnostic("relationships", line, column, e.code, e.message)
            for line, column, e in problems
        ]
        if compiled is None:
            return Report(tuple(diagnostics), (), "fix the policy to run the assertions", False)
        rendered = render_scenario(scenario, inline_policy=True)
        with tempfile.TemporaryDirectory(prefix="policyd-playground-") as directory:
            path = Path(directory) / SCENARIO_FILE
            path.write_text(rendered.text, encoding="utf-8")
            try:
                (loaded,) = load_validation_files(path)
            except PolicyErrors as e:
                relocated = _relocate(e.diagnostics, scenario, rendered.first_lines)
                diagnostics += [d for d in relocated if d.pane not in ("policy", "relationships")]
                return Report(tuple(diagnostics), (), "fix the errors to run the assertions", False)
        first = rendered.first_lines
        if not self.backend.read_only:
            outcomes = _run(loaded, first)
            return Report(tuple(diagnostics), tuple(outcomes), _summary(outcomes), True)
        outcomes = self._ask(scenario, loaded, first.get("assertions", 1))
        summary = _summary(outcomes)
        if loaded.expected:
            summary += "; expected relations are run on the panes' data only, not on a server"
        return Report(tuple(diagnostics), tuple(outcomes), summary, True)

    def _ask(self, scenario: Scenario, loaded: ValidationFile, first: int) -> list[Outcome]:
        """Each assertion asked of the backend (expected relations need the panes' data)."""
        outcomes: list[Outcome] = []
        for assertion in loaded.assertions:
            expected = _EXPECTED[assertion.kind]
            try:
                result = self.backend.check(
                    scenario,
                    assertion.resource,
                    assertion.permission,
                    assertion.subject,
                    assertion.context,
                )
            except PolicydError as e:
                outcomes.append(_outcome(assertion, first, f"{assertion.text}: {e}"))
                continue
            message = ""
            if result.permissionship is not expected:
                message = (
                    f"{assertion.kind.value} {assertion.text}: expected {expected.value}, "
                    f"got {result.permissionship.value}"
                )
            outcomes.append(_outcome(assertion, first, message))
        return outcomes

    def check(self, scenario: Scenario, query: str, context: str) -> Answer:
        """The check box: the answer and why.

        Raises:
            PolicydError: the query or context is malformed, or the check failed.
        """
        resource, permission, subject = parse_query(query)
        result: CheckResult = self.backend.check(
            scenario, resource, permission, subject, parse_context(context)
        )
        assert result.explanation is not None, "the backend asks for an explanation"
        return Answer(
            result.permissionship.value,
            result.missing,
            format_explanation(result.explanation),
            explanation_graph(result.explanation),
        )

    def around(self, scenario: Scenario, object_text: str, depth: int = 2) -> Graph:
        """The relationships within ``depth`` steps of an object, as a graph.

        Raises:
            PolicydError: the object is malformed.
        """
        start = parse_object(object_text.strip(), "object")
        return relationship_graph(start, self.backend.around(scenario, start, depth))


def _pane_at(line: int, scenario: Scenario, first_lines: dict[str, int]) -> str | None:
    for pane, first in first_lines.items():
        count = len(getattr(scenario, pane).rstrip("\n").split("\n"))
        if first <= line < first + count:
            return pane
    return None


def _summary(outcomes: Sequence[Outcome]) -> str:
    failed = sum(not o.passed for o in outcomes)
    if failed:
        return f"{failed} of {len(outcomes)} assertions failed"
    return f"ok: {len(outcomes)} assertions passed"


_EXPECTED = {
    AssertionKind.TRUE: Permissionship.HAS_PERMISSION,
    AssertionKind.FALSE: Permissionship.NO_PERMISSION,
    AssertionKind.CAVEATED: Permissionship.CONDITIONAL,
}


def _line(span: SourceSpan | None) -> int:
    return span.line if span is not None else 0


def _outcome(assertion: Assertion, first: int, failure: str) -> Outcome:
    """An assertion's outcome at its line of the assertions pane; ``failure`` empty if it held."""
    query = f"{assertion.resource}#{assertion.permission}@{assertion.subject}"
    return Outcome(
        "assertions",
        _line(assertion.span) - first + 1,
        f"{assertion.kind.value} {assertion.text}",
        not failure,
        failure,
        query,
        json.dumps(assertion.context) if assertion.context else "",
    )


def _run(loaded: ValidationFile, first_lines: dict[str, int]) -> list[Outcome]:
    """Run the file as ``policyd validate`` does; an outcome per assertion and per block."""
    failures = run_validation_file(loaded)
    failed_at = {_line(f.span): f for f in failures}
    outcomes: list[Outcome] = []
    first = first_lines.get("assertions", 1)
    for assertion in loaded.assertions:
        failure = failed_at.get(_line(assertion.span))
        outcomes.append(_outcome(assertion, first, failure.message if failure else ""))
    first = first_lines.get("validation", 1)
    for block in loaded.expected:
        lines = {_line(block.span)} | {_line(s.span) for s in block.subjects}
        problems = [failed_at[n].message for n in sorted(lines) if n in failed_at]
        outcomes.append(
            Outcome(
                "validation",
                _line(block.span) - first + 1,
                f"{block.resource}#{block.permission}",
                not problems,
                "; ".join(problems),
            )
        )
    return outcomes


def _relocate(
    diagnostics: Iterable[Diagnostic], scenario: Scenario, first_lines: dict[str, int]
) -> Iterator[PaneDiagnostic]:
    """Move diagnostics from the written-out file's lines to the pane each came from."""
    for d in diagnostics:
        pane = _pane_at(d.span.line, scenario, first_lines)
        if pane is None:
            yield _in_pane("file", d)
        else:
            yield _in_pane(pane, d, first_lines[pane] - 1, len(INDENT))
