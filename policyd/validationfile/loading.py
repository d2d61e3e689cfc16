"""Reading a validation file: its YAML, policy, relationships, assertions and expected relations.

Every problem is reported with the file, line and column where it sits in the
YAML, all at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from policyd.dsl.compiler import CompiledPolicy, compile_policy, resolve_relative_import
from policyd.errors import (
    Diagnostic,
    InvalidRelationshipError,
    PolicyErrors,
    PolicySyntaxError,
    SourceSpan,
)
from policyd.relationship import (
    RELATION_NAME,
    ObjectRef,
    Relationship,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)
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
