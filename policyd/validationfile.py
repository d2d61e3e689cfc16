"""Package validationfile reads SpiceDB validation files: a schema, relationships, assertions.

Policy authors test policies the way they do with ``zed validate``: one YAML
file holds ``schema`` (or ``schemaFile``), ``relationships`` (one per line),
``assertions`` (``assertTrue`` / ``assertFalse`` / ``assertCaveated``) and
``validation`` (expected relations). Every problem is reported with the file,
line and column where it sits in the YAML, all at once.

An expected-relations line ``[subject] is <resource#relation>/…`` names the
subject and the paths it is found through, and both are checked, as
``zed validate`` does: a path is the ``resource#relation`` whose stored
relationship names the subject directly (for a member of a nested group, the
group's ``group:eng#member``, not the document's relation), found by expanding
the permission recursively; a subject in both operands of ``&`` has the paths
of both, a subject left by ``-`` has those of its base (and of the subtracted
side too when that side only removes it under a caveat). The paths must equal
the computed ones exactly, in any order (SpiceDB's pkg/development/validation.go
compares the sorted lists; internal/developmentmembership tracks the paths).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from policyd.consistency import Consistency
from policyd.decisions import ExpandKind, ExpandNode, Permissionship
from policyd.dsl.compiler import CompiledPolicy, compile_policy, resolve_relative_import
from policyd.engine import Engine, format_explanation
from policyd.errors import (
    Diagnostic,
    InvalidRelationshipError,
    PolicydError,
    PolicyErrors,
    PolicySyntaxError,
    SourceSpan,
)
from policyd.relationship import (
    RELATION_NAME,
    WILDCARD,
    ObjectRef,
    Relationship,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)
from policyd.store.memory import MemoryStore
from policyd.store.validation import Validator


class AssertionKind(Enum):
    """What an assertion expects a Check to answer."""

    TRUE = "assertTrue"
    FALSE = "assertFalse"
    CAVEATED = "assertCaveated"


@dataclass(frozen=True, slots=True)
class Assertion:
    """``resource#permission@subject [with {context}]`` and the answer it expects."""

    kind: AssertionKind
    resource: ObjectRef
    permission: str
    subject: SubjectRef
    context: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    span: SourceSpan | None = field(default=None, compare=False)
    text: str = ""


@dataclass(frozen=True, slots=True)
class ExpectedSubject:
    """One line of an expected-relations block: ``[subject] is <resource#relation>/…``.

    ``paths`` are the ``resource#relation`` texts between the angle brackets, as written.
    """

    subject: SubjectRef
    caveated: bool
    excluded: tuple[str, ...]
    """Subjects a wildcard leaves out, as written: ``user:u2``, or ``user:u2[...]`` when
    the exclusion is conditional."""
    paths: tuple[str, ...]
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ExpectedRelations:
    """Every subject expected to hold ``permission`` on ``resource``."""

    resource: ObjectRef
    permission: str
    subjects: tuple[ExpectedSubject, ...]
    span: SourceSpan | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ValidationFile:
    """A loaded, checked validation file."""

    path: str
    policy: CompiledPolicy
    policy_text: str
    relationships: tuple[Relationship, ...]
    assertions: tuple[Assertion, ...]
    expected: tuple[ExpectedRelations, ...]


def load_validation_files(path: str | Path) -> list[ValidationFile]:
    """Load every YAML document of a validation file.

    Raises:
        PolicyErrors: every problem found, each located in the YAML file.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    diagnostics: list[Diagnostic] = []
    files: list[ValidationFile] = []
    try:
        documents = list(yaml.compose_all(text))
    except yaml.YAMLError as e:
        raise PolicyErrors([_yaml_diagnostic(str(path), e)]) from e
    for document in documents:
        if document is None:
            continue
        loaded = _Loader(path, text, diagnostics).load(document)
        if loaded is not None:
            files.append(loaded)
    if diagnostics:
        raise PolicyErrors(diagnostics)
    return files


def _yaml_diagnostic(name: str, e: yaml.YAMLError) -> Diagnostic:
    mark = getattr(e, "problem_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = getattr(e, "problem", None) or str(e)
    return Diagnostic(SourceSpan(name, line, column, line, column), "yaml-invalid", problem)


def _span(name: str, node: yaml.Node) -> SourceSpan:
    start, end = node.start_mark, node.end_mark
    return SourceSpan(name, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


class _Loader:
    """Reads one YAML document, collecting diagnostics instead of stopping at the first."""

    def __init__(self, path: Path, text: str, diagnostics: list[Diagnostic]) -> None:
        self.path = path
        self.name = str(path)
        self.lines = text.splitlines()
        self.out = diagnostics

    def error(self, span: SourceSpan, code: str, message: str) -> None:
        self.out.append(Diagnostic(span, code, message))

    def load(self, document: yaml.Node) -> ValidationFile | None:
        if not isinstance(document, yaml.MappingNode):
            self.error(_span(self.name, document), "yaml-invalid", "expected a mapping of keys")
            return None
        keys = {k.value: v for k, v in document.value if isinstance(k, yaml.ScalarNode)}
        unknown = set(keys) - {"schema", "schemaFile", "relationships", "assertions", "validation"}
        for key in sorted(unknown):
            key_node = next(k for k, _ in document.value if k.value == key)
            self.error(
                _span(self.name, key_node),
                "unknown-key",
                f"unknown key '{key}': expected schema, schemaFile, relationships, "
                "assertions or validation",
            )
        before = len(self.out)
        policy, policy_text = self._policy(keys, document)
        if policy is None:
            return None
        relationships = tuple(self._relationships(keys.get("relationships"), policy))
        assertions = tuple(self._assertions(keys.get("assertions")))
        expected = tuple(self._expected(keys.get("validation")))
        if len(self.out) > before:
            return None
        return ValidationFile(self.name, policy, policy_text, relationships, assertions, expected)

    def _policy(
        self, keys: dict[str, yaml.Node], document: yaml.Node
    ) -> tuple[CompiledPolicy | None, str]:
        node = keys.get("schema")
        file_node = keys.get("schemaFile")
        if node is None and file_node is None:
            self.error(_span(self.name, document), "missing-schema", "no 'schema' or 'schemaFile'")
            return None, ""
        if node is None:
            assert file_node is not None
            schema_path = self.path.parent / str(file_node.value)
            try:
                text = schema_path.read_text(encoding="utf-8")
            except OSError as e:
                self.error(
                    _span(self.name, file_node),
                    "schema-file-unreadable",
                    f"cannot read schema file '{file_node.value}': {e.strerror}",
                )
                return None, ""
            return self._compile(text, str(schema_path), None), text
        if not isinstance(node, yaml.ScalarNode):
            self.error(_span(self.name, node), "yaml-invalid", "'schema' must be a string")
            return None, ""
        return self._compile(str(node.value), self.name, node), str(node.value)

    def _compile(
        self, text: str, source_name: str, node: yaml.ScalarNode | None
    ) -> CompiledPolicy | None:
        try:
            compiled = compile_policy(text, source_name, resolve_import=resolve_relative_import)
            warnings = tuple(self._relocate(d, node) for d in compiled.warnings)
            return replace(compiled, warnings=warnings)
        except PolicySyntaxError as e:
            assert e.span is not None
            self.out.append(self._relocate(Diagnostic(e.span, e.code, e.message), node))
        except PolicyErrors as e:
            self.out.extend(self._relocate(d, node) for d in e.errors)
        return None

    def _relocate(self, d: Diagnostic, node: yaml.ScalarNode | None) -> Diagnostic:
        """Move a diagnostic from schema-text coordinates to YAML-file coordinates."""
        if node is None or d.span.file != self.name:
            return d
        if node.style in ("|", ">"):
            first = node.start_mark.line + 1  # content starts on the line after the indicator
            indent = _indent(self.lines[first]) if first < len(self.lines) else 0
            line = first + d.span.line
            column = indent + d.span.column
        else:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        return Diagnostic(
            SourceSpan(self.name, line, column, line, column), d.code, d.message, d.severity
        )

    def _line_of(self, text: str, node: yaml.Node) -> SourceSpan:
        """Where a line of a block scalar sits in the file (folded scalars lose positions)."""
        for i in range(node.start_mark.line, min(node.end_mark.line + 1, len(self.lines))):
            column = self.lines[i].find(text)
            if column >= 0:
                return SourceSpan(self.name, i + 1, column + 1, i + 1, column + len(text) + 1)
        return _span(self.name, node)

    def _relationships(
        self, node: yaml.Node | None, policy: CompiledPolicy
    ) -> Iterator[Relationship]:
        if _is_null(node):
            return
        assert node is not None
        if not isinstance(node, yaml.ScalarNode):
            self.error(_span(self.name, node), "yaml-invalid", "'relationships' must be a string")
            return
        validator = Validator(policy.schema)
        for raw in str(node.value).splitlines():
            line = raw.strip()
            if not line or line.startswith("//"):
                continue
            span = self._line_of(line, node)
            try:
                relationship = parse_relationship(line)
                validator.check(relationship, "relationship")
            except InvalidRelationshipError as e:
                self.error(span, e.code, e.message)
                continue
            yield relationship

    def _assertions(self, node: yaml.Node | None) -> Iterator[Assertion]:
        if _is_null(node):
            return
        assert node is not None
        if not isinstance(node, yaml.MappingNode):
            self.error(_span(self.name, node), "yaml-invalid", "'assertions' must be a mapping")
            return
        for key, items in node.value:
            try:
                kind = AssertionKind(key.value)
            except ValueError:
                self.error(
                    _span(self.name, key),
                    "unknown-key",
                    f"unknown assertion list '{key.value}': expected assertTrue, "
                    "assertFalse or assertCaveated",
                )
                continue
            if _is_null(items):
                continue
            if not isinstance(items, yaml.SequenceNode):
                self.error(_span(self.name, items), "yaml-invalid", f"'{key.value}' must be a list")
                continue
            for item in items.value:
                span = _span(self.name, item)
                try:
                    yield _parse_assertion(kind, str(item.value), span)
                except InvalidRelationshipError as e:
                    self.error(span, e.code, e.message)

    def _expected(self, node: yaml.Node | None) -> Iterator[ExpectedRelations]:
        if _is_null(node):
            return
        assert node is not None
        if not isinstance(node, yaml.MappingNode):
            self.error(_span(self.name, node), "yaml-invalid", "'validation' must be a mapping")
            return
        for key, items in node.value:
            span = _span(self.name, key)
            try:
                resource, permission = _parse_resource_permission(str(key.value))
            except InvalidRelationshipError as e:
                self.error(span, e.code, e.message)
                continue
            subjects: list[ExpectedSubject] = []
            for item in items.value if isinstance(items, yaml.SequenceNode) else ():
                try:
                    subjects.append(
                        _parse_expected_subject(str(item.value), _span(self.name, item))
                    )
                except InvalidRelationshipError as e:
                    self.error(_span(self.name, item), e.code, e.message)
            yield ExpectedRelations(resource, permission, tuple(subjects), span)


def _is_null(node: yaml.Node | None) -> bool:
    """True for an absent key, an empty value or YAML's null."""
    return node is None or (
        isinstance(node, yaml.ScalarNode)
        and (node.tag.endswith(":null") or node.value in ("", "~", "null"))
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _parse_resource_permission(text: str) -> tuple[ObjectRef, str]:
    resource_text, sep, permission = text.strip().rpartition("#")
    if not sep or not RELATION_NAME.fullmatch(permission):
        raise InvalidRelationshipError(
            f"expected resource#permission, got {text!r}", field="resource"
        )
    return parse_object(resource_text, "resource"), permission


def _parse_assertion(kind: AssertionKind, text: str, span: SourceSpan) -> Assertion:
    body, sep, context_text = text.partition(" with ")
    context: dict[str, Any] = {}
    if sep:
        try:
            loaded = json.loads(context_text)
        except json.JSONDecodeError as e:
            raise InvalidRelationshipError(
                f"assertion context is not JSON: {e.msg}", field="context"
            ) from e
        if not isinstance(loaded, dict):
            raise InvalidRelationshipError(
                "assertion context must be a JSON object", field="context"
            )
        context = loaded
    resource_part, at, subject_text = body.strip().partition("@")
    if not at:
        raise InvalidRelationshipError(
            f"expected resource#permission@subject, got {text!r}", field="assertion"
        )
    resource, permission = _parse_resource_permission(resource_part)
    subject = parse_subject(subject_text.strip())
    return Assertion(kind, resource, permission, subject, context, span, text)


def _split_expected_line(text: str) -> tuple[str, str] | None:
    """``[subject] is <…>`` into the bracketed subject (which may hold ``[...]``) and the rest."""
    if not text.startswith("["):
        return None
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return text[1:i], text[i + 1 :]
    return None


def _parse_expected_subject(text: str, span: SourceSpan) -> ExpectedSubject:
    parts = _split_expected_line(text.strip())
    if parts is None:
        raise InvalidRelationshipError(
            f"expected '[subject] is <resource#relation>', got {text!r}", field="validation"
        )
    subject_text, rest = parts[0].strip(), parts[1]
    caveated = subject_text.endswith("[...]")
    subject_text = subject_text.removesuffix("[...]").strip()
    excluded: list[str] = []
    if " - {" in subject_text:
        subject_text, _, listed = subject_text.partition(" - {")
        for item in (s.strip() for s in listed.rstrip("}").split(",")):
            if item:
                parse_subject(item.removesuffix("[...]"))
                excluded.append(item)
    subject = parse_subject(subject_text.strip())
    paths = []
    for path in re.findall(r"<([^>]+)>", rest):
        try:
            resource, relation = _parse_resource_permission(path)
        except InvalidRelationshipError as e:
            raise InvalidRelationshipError(
                f"invalid resource and relation <{path}>: {e.message}", field="validation"
            ) from e
        paths.append(f"{resource}#{relation}")
    return ExpectedSubject(subject, caveated, tuple(excluded), tuple(paths), span)


# ---- running a file --------------------------------------------------------------------------

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
    found = _Membership(engine, consistency).userset(block.resource, block.permission)
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


# ---- the paths of expected subjects ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    """A subject found by expansion: its paths, and whether it holds only under a caveat.

    A wildcard also carries the ids it leaves out.
    """

    paths: frozenset[str]
    conditional: bool = False
    excluded: frozenset[str] = frozenset()


_Subjects = dict[SubjectRef, _Found]
"""The subjects a userset holds, as expansion found them."""


class _Membership:
    """SpiceDB's developer membership set, kept to what the paths of subjects need.

    It expands a userset recursively (userset subjects are expanded in turn) and
    combines the subjects found as internal/developmentmembership does: ``+``
    unites paths, ``&`` keeps a subject on both sides (or on one side and under an
    unconditional wildcard on the other) with the paths of its sides, ``-`` keeps
    the base's subjects that the other side does not remove outright. Which
    subjects hold is ListSubjects' answer; this only says through which paths.
    """

    def __init__(self, engine: Engine, consistency: Consistency) -> None:
        self.engine = engine
        self.consistency = consistency
        self.expanding: set[str] = set()

    def userset(self, resource: ObjectRef, relation: str) -> _Subjects:
        """The subjects of ``resource#relation``; a userset met again inside itself adds none."""
        key = f"{resource}#{relation}"
        if key in self.expanding:
            return {}
        self.expanding.add(key)
        try:
            return self.node(
                self.engine.expand(resource, relation, consistency=self.consistency).tree
            )
        finally:
            self.expanding.discard(key)

    def node(self, node: ExpandNode) -> _Subjects:
        if node.kind is ExpandKind.LEAF:
            return self.leaf(node)
        found = [self.node(child) for child in node.children]
        if node.kind is ExpandKind.UNION or not found:
            united: _Subjects = {}
            for one in found:
                united = _union(united, one)
            return united
        if node.kind is ExpandKind.INTERSECTION:
            common = found[0]
            for one in found[1:]:
                common = _intersect(common, one)
            return common
        return _exclude(found[0], found[1])

    def leaf(self, node: ExpandNode) -> _Subjects:
        found: _Subjects = {}
        for relationship in node.relationships:
            subject = relationship.subject
            conditional = relationship.caveat_name is not None
            found = _union(found, {subject: _Found(frozenset({node.target}), conditional)})
            if subject.relation is not None:
                inner = self.userset(subject.object, subject.relation)
                if conditional:
                    inner = {k: replace(f, conditional=True) for k, f in inner.items()}
                found = _union(found, inner)
        return found


def _wildcard_of(subject: SubjectRef) -> SubjectRef | None:
    """``type:*`` for a plain subject ``type:id``; None for wildcards and usersets."""
    if subject.relation is None and subject.id != WILDCARD:
        return SubjectRef(subject.type, WILDCARD)
    return None


def _wildcard_over(found: _Subjects, subject: SubjectRef) -> _Found | None:
    """The wildcard of ``subject``'s type among ``found``, if any, for a plain subject."""
    wildcard = _wildcard_of(subject)
    return found.get(wildcard) if wildcard is not None else None


def _union(a: _Subjects, b: _Subjects) -> _Subjects:
    out = dict(a)
    for key, found in b.items():
        had = out.get(key)
        out[key] = (
            found
            if had is None
            else _Found(
                had.paths | found.paths,
                had.conditional and found.conditional,
                had.excluded & found.excluded,
            )
        )
    for key, found in list(out.items()):  # a subject found outright is no longer left out
        if key.id == WILDCARD and found.excluded:
            back = {k.id for k, f in out.items() if _wildcard_of(k) == key and not f.conditional}
            out[key] = replace(found, excluded=found.excluded - back)
    return out


def _intersect(a: _Subjects, b: _Subjects) -> _Subjects:
    out: _Subjects = {}
    for this, that in ((a, b), (b, a)):
        for key, found in this.items():
            if key in out:
                continue
            other = that.get(key)
            wildcard = _wildcard_over(that, key) if other is None else None
            if other is not None:
                out[key] = _Found(
                    found.paths | other.paths,
                    found.conditional or other.conditional,
                    found.excluded | other.excluded,
                )
            elif wildcard is not None and key.id not in wildcard.excluded:
                extra = wildcard.paths if wildcard.conditional else frozenset()
                out[key] = _Found(found.paths | extra, found.conditional or wildcard.conditional)
    return out


def _exclude(base: _Subjects, subtract: _Subjects) -> _Subjects:
    out: _Subjects = {}
    for key, found in base.items():
        other = subtract.get(key)
        if key.id == WILDCARD:
            if other is not None and not other.conditional:
                continue
            removed = {
                k.id for k, f in subtract.items() if _wildcard_of(k) == key and not f.conditional
            }
            out[key] = _Found(
                found.paths, found.conditional or other is not None, found.excluded | removed
            )
        elif other is not None:
            if other.conditional:  # removed only under a caveat: both sides are its sources
                out[key] = _Found(found.paths | other.paths, True)
        else:
            wildcard = _wildcard_over(subtract, key)
            if wildcard is None or key.id in wildcard.excluded:
                out[key] = found
            elif wildcard.conditional:
                out[key] = replace(found, conditional=True)
    return out
