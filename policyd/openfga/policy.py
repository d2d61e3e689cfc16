"""Package policy writes an OpenFGA model as an equivalent policy in SpiceDB's schema language.

Types become definitions and conditions caveats. A relation that is only a
direct assignment (``define owner: [user]``) becomes a relation; one computed
from others becomes a permission; one that is both (``define viewer: [user]
or editor``) splits into a stored relation ``direct_viewer`` holding the
direct assignment and a permission ``viewer`` over it, so checks still ask
for ``viewer`` while relationships are written to ``direct_viewer``
(``stored_relation`` says where each OpenFGA tuple goes). ``or``, ``and``,
``but not`` and ``x from y`` become ``+``, ``&``, ``-`` and ``y->x``, the
arrow walking the stored relation, as OpenFGA's tuple-to-userset reads the
tuples of ``y`` itself. What has no equivalent is refused with
ConversionError naming the file and line; the text is compiled before it is
returned, so a conversion never yields a policy that does not load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import assert_never

from policyd.dsl.compiler import compile_policy
from policyd.errors import ConversionError, PolicydError
from policyd.openfga.model import (
    Computed,
    Condition,
    Difference,
    Direct,
    Intersection,
    Model,
    RelationDef,
    Rewrite,
    TupleToUserset,
    TypeDef,
    TypeRestriction,
    Union,
    walk,
)
from policyd.relationship import RELATION_NAME, TYPE_NAME

DIRECT_PREFIX = "direct_"


@dataclass(frozen=True, slots=True)
class ConvertedModel:
    """The policy text and where each OpenFGA relation's tuples are stored."""

    text: str
    stored: dict[tuple[str, str], str] = field(default_factory=dict)
    """(type, OpenFGA relation) → the policy relation its tuples are written to; relations
    computed only (permissions) have none."""

    def stored_relation(self, type_name: str, relation: str) -> str | None:
        """Where tuples of ``type_name#relation`` go, or None when nothing can be stored there."""
        return self.stored.get((type_name, relation))


def to_policy(model: Model) -> ConvertedModel:
    """The policy equivalent to ``model``.

    Raises:
        ConversionError: a name the policy language cannot spell, a tupleset that
            is not a directly assignable relation, or an unknown condition.
    """
    _check_names(model)
    stored = {
        (t.name, r.name): _stored_name(t, r)
        for t in model.types
        for r in t.relations
        if any(isinstance(node, Direct) for node in walk(r.rewrite))
    }
    lines = [f"// converted from OpenFGA ({Path(model.source).name}) by `policyd convert`", ""]
    for condition in model.conditions:
        lines.extend(_caveat(condition))
        lines.append("")
    for type_def in model.types:
        lines.extend(_definition(model, type_def, stored))
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    try:
        compile_policy(text, f"{model.source} (converted)")
    except PolicydError as e:
        raise ConversionError(f"the converted policy does not compile: {e}", span=e.span) from e
    return ConvertedModel(text, stored)


def _check_names(model: Model) -> None:
    for type_def in model.types:
        if not TYPE_NAME.fullmatch(type_def.name):
            raise ConversionError(
                f"type name {type_def.name!r} is not a policy name "
                "([a-z][a-z0-9_]{1,62}[a-z0-9], optionally prefixed): rename it",
                span=type_def.span,
            )
        for relation in type_def.relations:
            if not RELATION_NAME.fullmatch(relation.name):
                raise ConversionError(
                    f"relation name {relation.name!r} of {type_def.name} is not a policy name "
                    "([a-z][a-z0-9_]{1,62}[a-z0-9]): rename it",
                    span=relation.span,
                )
    for condition in model.conditions:
        if not RELATION_NAME.fullmatch(condition.name):
            raise ConversionError(
                f"condition name {condition.name!r} is not a caveat name: rename it",
                span=condition.span,
            )


def _stored_name(type_def: TypeDef, relation: RelationDef) -> str:
    """The relation holding ``relation``'s tuples: itself, or ``direct_NAME`` when computed too."""
    if isinstance(relation.rewrite, Direct):
        return relation.name
    taken = {r.name for r in type_def.relations}
    name = f"{DIRECT_PREFIX}{relation.name}"
    while name in taken:
        name = f"{DIRECT_PREFIX}{name}"
    return name


def _caveat(condition: Condition) -> list[str]:
    params = ", ".join(f"{p.name} {p.type.replace(',', ', ')}" for p in condition.params)
    body = [f"    {line}" for line in condition.expression.splitlines()]
    return [f"caveat {condition.name}({params}) {{", *body, "}"]


def _definition(model: Model, type_def: TypeDef, stored: dict[tuple[str, str], str]) -> list[str]:
    members: list[str] = []
    for relation in type_def.relations:
        directs = [n for n in walk(relation.rewrite) if isinstance(n, Direct)]
        if directs:
            allowed = " | ".join(_restriction(model, relation, t) for t in directs[0].types)
            if not allowed:
                raise ConversionError(
                    f"{type_def.name}#{relation.name} is directly assignable but names no type",
                    span=relation.span,
                )
            members.append(f"relation {stored[type_def.name, relation.name]}: {allowed}")
        if not isinstance(relation.rewrite, Direct):
            expression = _expression(model, type_def, relation, relation.rewrite, stored, None)
            members.append(f"permission {relation.name} = {expression}")
    if not members:
        return [f"definition {type_def.name} {{}}"]
    return [f"definition {type_def.name} {{", *(f"    {m}" for m in members), "}"]


def _restriction(model: Model, relation: RelationDef, t: TypeRestriction) -> str:
    if t.condition is not None and all(c.name != t.condition for c in model.conditions):
        raise ConversionError(
            f"{relation.name} names condition {t.condition!r}, which the model does not define",
            span=relation.span,
        )
    text = f"{t.type}:*" if t.wildcard else f"{t.type}#{t.relation}" if t.relation else t.type
    return f"{text} with {t.condition}" if t.condition else text


def _expression(
    model: Model,
    type_def: TypeDef,
    relation: RelationDef,
    node: Rewrite,
    stored: dict[tuple[str, str], str],
    parent: type | None,
) -> str:
    """The policy expression of a rewrite; compound children of another kind in parentheses."""

    def child(n: Rewrite, within: type) -> str:
        return _expression(model, type_def, relation, n, stored, within)

    match node:
        case Direct():
            return stored[type_def.name, relation.name]
        case Computed(relation=name):
            return name
        case TupleToUserset(tupleset=tupleset, computed=computed):
            target = stored.get((type_def.name, tupleset))
            if target is None or not _only_direct(type_def, tupleset):
                raise ConversionError(
                    f"'{computed} from {tupleset}' walks {type_def.name}#{tupleset}, which is not "
                    "a directly assignable relation (OpenFGA requires one, and so do arrows)",
                    span=relation.span,
                )
            return f"{target}->{computed}"
        case Union(children=children):
            text = " + ".join(child(c, Union) for c in children)
            return text if parent in (None, Union) else f"({text})"
        case Intersection(children=children):
            text = " & ".join(child(c, Intersection) for c in children)
            return text if parent in (None, Intersection) else f"({text})"
        case Difference(base=base, subtract=subtract):
            text = f"{child(base, Difference)} - {child(subtract, Difference)}"
            return text if parent is None else f"({text})"
        case _:
            assert_never(node)


def _only_direct(type_def: TypeDef, name: str) -> bool:
    found = next((r for r in type_def.relations if r.name == name), None)
    return found is not None and isinstance(found.rewrite, Direct)
