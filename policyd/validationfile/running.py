"""Running a validation file: an engine over its relationships, each assertion and block checked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policyd.consistency import Consistency
from policyd.decisions import Permissionship
from policyd.engine import Engine, format_explanation
from policyd.errors import (
    PolicydError,
    SourceSpan,
)
from policyd.store.memory import MemoryStore
from policyd.validationfile.loading import (
    AssertionKind,
    ExpectedRelations,
    ExpectedSubject,
    ValidationFile,
)
from policyd.validationfile.membership import Membership

_EXPECTED_ANSWER = {
    AssertionKind.TRUE: Permissionship.HAS_PERMISSION,
    AssertionKind.FALSE: Permissionship.NO_PERMISSION,
    AssertionKind.CAVEATED: Permissionship.CONDITIONAL,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """An assertion or expected-relations block that did not hold, with the explain tree."""

    span: SourceSpan | None
    message: str
    explanation: str = ""

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span else ""
        return f"{where}{self.message}"


def load_engine(file: ValidationFile, max_depth: int = 50, *, index: bool = True) -> Engine:
    """An engine over a fresh in-memory store holding the file's policy and relationships.

    ``index=False`` makes the engine read the store for every step instead of
    its in-memory index, so both read paths can be tested.
    """
    engine = Engine(MemoryStore(), max_depth=max_depth, index=index)
    engine.write_policy(file.policy_text, file.path)
    if file.relationships:
        engine.import_relationships(file.relationships)
    return engine


def run_validation_file(
    file: ValidationFile, max_depth: int = 50, *, index: bool = True
) -> list[Failure]:
    """Run every assertion and expected-relations block; return what failed."""
    engine = load_engine(file, max_depth, index=index)
    consistency = Consistency.fully_consistent()
    failures: list[Failure] = []
    for assertion in file.assertions:
        try:
            result = engine.check(
                assertion.resource,
                assertion.permission,
                assertion.subject,
                context=assertion.context,
                consistency=consistency,
                explain=True,
            )
        except PolicydError as e:
            failures.append(
                Failure(assertion.span, f"{assertion.kind.value} {assertion.text}: {e}")
            )
            continue
        expected = _EXPECTED_ANSWER[assertion.kind]
        if result.permissionship is not expected:
            missing = f" (needs {', '.join(result.missing)})" if result.missing else ""
            tree = format_explanation(result.explanation) if result.explanation else ""
            failures.append(
                Failure(
                    assertion.span,
                    f"{assertion.kind.value} {assertion.text}: expected "
                    f"{expected.value}, got {result.permissionship.value}{missing}",
                    tree,
                )
            )
    for block in file.expected:
        failures.extend(_check_expected(engine, block, consistency))
    return failures


def _expected_text(expected: ExpectedSubject) -> str:
    """The subject as a found one prints itself, exclusions and caveat mark included."""
    excluded = ", ".join(sorted(expected.excluded))
    return (
        str(expected.subject)
        + (f" - {{{excluded}}}" if expected.excluded else "")
        + ("[...]" if expected.caveated else "")
    )


def _check_expected(
    engine: Engine, block: ExpectedRelations, consistency: Consistency
) -> list[Failure]:
    """Compare the subjects that hold ``resource#permission``, and their paths, with the block."""
    wanted = {_expected_text(s) for s in block.subjects}
    kinds = {(s.subject.type, s.subject.relation) for s in block.subjects}
    actual: set[str] = set()
    for subject_type, subject_relation in sorted(kinds, key=str):
        result = engine.list_subjects(
            block.resource,
            block.permission,
            subject_type,
            subject_relation,
            consistency=consistency,
        )
        actual.update(str(found) for found in result.subjects)
    failures = []
    if wanted != actual:
        missing = ", ".join(sorted(wanted - actual)) or "none"
        extra = ", ".join(sorted(actual - wanted)) or "none"
        failures.append(
            Failure(
                block.span,
                f"{block.resource}#{block.permission}: expected subjects missing: {missing}; "
                f"unexpected subjects: {extra}",
            )
        )
    found = Membership(engine, consistency).userset(block.resource, block.permission)
    for expected in block.subjects:
        if _expected_text(expected) not in actual:
            continue  # reported above
        specified = sorted(expected.paths)
        at = found.get(expected.subject)
        computed = sorted(at.paths) if at is not None else []
        if specified != computed:
            failures.append(
                Failure(
                    expected.span,
                    f"{block.resource}#{block.permission}: found different relationships for "
                    f"subject {expected.subject}: specified {_paths_text(specified)}, "
                    f"computed {_paths_text(computed)}",
                )
            )
    return failures


def _paths_text(paths: Iterable[str]) -> str:
    return "/".join(f"<{p}>" for p in paths) or "nothing"
