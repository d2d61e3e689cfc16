"""Package diff compares two compiled policies: which definitions, members and caveats change.

``policyd policy diff`` prints it beside the stored relationships that would
block the change. Members compare by meaning (the IR), so reformatting a
policy changes nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import assert_never

from policyd.schema.ir import (
    Arrow,
    ArrowKind,
    Caveat,
    Definition,
    Exclusion,
    Intersection,
    Nil,
    Relation,
    RelationRef,
    Rewrite,
    Schema,
    SelfRef,
    Union,
)


class ChangeKind(Enum):
    """Whether a part of the policy is new, gone, or changed."""

    ADDED = "+"
    REMOVED = "-"
    CHANGED = "~"


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One changed part: ``what`` names it (``definition post``, ``permission post#view``)."""

    kind: ChangeKind
    what: str
    before: str = ""
    after: str = ""

    def __str__(self) -> str:
        match self.kind:
            case ChangeKind.ADDED:
                return f"+ {self.what}: {self.after}" if self.after else f"+ {self.what}"
            case ChangeKind.REMOVED:
                return f"- {self.what}: {self.before}" if self.before else f"- {self.what}"
            case ChangeKind.CHANGED:
                return f"~ {self.what}: {self.before} → {self.after}"
            case _:
                assert_never(self.kind)


def rewrite_text(node: Rewrite) -> str:
    """A permission's expression in policy syntax (compound operands in parentheses)."""

    def operand(child: Rewrite) -> str:
        text = rewrite_text(child)
        return f"({text})" if isinstance(child, Union | Intersection | Exclusion) else text

    match node:
        case Nil():
            return "nil"
        case SelfRef():
            return "self"
        case RelationRef():
            return node.name
        case Arrow():
            if node.kind is ArrowKind.ALL:
                return f"{node.tupleset}.all({node.target})"
            return f"{node.tupleset}->{node.target}"
        case Union():
            return " + ".join(operand(c) for c in node.children)
        case Intersection():
            return " & ".join(operand(c) for c in node.children)
        case Exclusion():
            return f"{operand(node.base)} - {operand(node.subtract)}"
        case _:
            assert_never(node)


def _relation_text(relation: Relation) -> str:
    return " | ".join(str(a) for a in relation.allowed)


def _caveat_text(caveat: Caveat) -> str:
    parameters = ", ".join(f"{p.name} {p.type}" for p in caveat.parameters)
    return f"({parameters}) {{ {caveat.expression.strip()} }}"


def _members(definition: Definition) -> dict[str, tuple[str, str]]:
    """Member name to (``relation``/``permission``, its text)."""
    members = {n: ("relation", _relation_text(r)) for n, r in definition.relations.items()}
    members.update(
        {n: ("permission", rewrite_text(p.rewrite)) for n, p in definition.permissions.items()}
    )
    return members


def _compare(
    what: str, before: dict[str, str], after: dict[str, str], changes: list[SchemaChange]
) -> None:
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None:
            changes.append(SchemaChange(ChangeKind.ADDED, f"{what} {name}", after=new or ""))
        elif new is None:
            changes.append(SchemaChange(ChangeKind.REMOVED, f"{what} {name}", before=old))
        elif old != new:
            changes.append(SchemaChange(ChangeKind.CHANGED, f"{what} {name}", old, new))


def diff_schemas(before: Schema | None, after: Schema) -> list[SchemaChange]:
    """What changes from ``before`` (None: no policy yet) to ``after``, definitions first."""
    changes: list[SchemaChange] = []
    old_definitions = dict(before.definitions) if before is not None else {}
    for name in sorted(old_definitions.keys() | after.definitions.keys()):
        old, new = old_definitions.get(name), after.definitions.get(name)
        if old is None or new is None:
            kind = ChangeKind.ADDED if old is None else ChangeKind.REMOVED
            changes.append(SchemaChange(kind, f"definition {name}"))
            continue
        old_members, new_members = _members(old), _members(new)
        for member in sorted(old_members.keys() | new_members.keys()):
            was, now = old_members.get(member), new_members.get(member)
            kind_name = (now or was or ("member", ""))[0]
            _compare(
                kind_name,
                {f"{name}#{member}": was[1]} if was else {},
                {f"{name}#{member}": now[1]} if now else {},
                changes,
            )
    old_caveats = dict(before.caveats) if before is not None else {}
    _compare(
        "caveat",
        {n: _caveat_text(c) for n, c in old_caveats.items()},
        {n: _caveat_text(c) for n, c in after.caveats.items()},
        changes,
    )
    return changes
