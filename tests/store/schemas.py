"""Schemas for store tests, built straight from the IR (the store must not depend on the DSL)."""

from __future__ import annotations

from policyd.schema.ir import (
    AllowedSubject,
    Caveat,
    CaveatParameter,
    CaveatType,
    Definition,
    Permission,
    Relation,
    RelationRef,
    Schema,
    Union,
)

POLICY_TEXT = "// test policy; the store keeps the text as it is given\n"


def _definition(
    name: str, *relations: Relation, permissions: tuple[Permission, ...] = ()
) -> Definition:
    return Definition(name, {r.name: r for r in relations}, {p.name: p for p in permissions})


def base_schema() -> Schema:
    """user, group (nested), document: plain, wildcard, userset, caveated, expiring subjects."""
    user = AllowedSubject("user")
    viewer = Relation(
        "viewer",
        (
            user,
            AllowedSubject("user", wildcard=True),
            AllowedSubject("group", relation="member"),
            AllowedSubject("user", caveat="only_weekdays"),
            AllowedSubject("user", expiration=True),
        ),
    )
    return Schema(
        definitions={
            "user": _definition("user"),
            "group": _definition(
                "group", Relation("member", (user, AllowedSubject("group", relation="member")))
            ),
            "document": _definition(
                "document",
                Relation("owner", (user,)),
                viewer,
                Relation(
                    "editor",
                    (
                        AllowedSubject("user", caveat="only_weekdays"),
                        AllowedSubject("user", caveat="unexpired"),
                    ),
                ),
                Relation("temp", (AllowedSubject("user", expiration=True),)),
                permissions=(
                    Permission("view", Union((RelationRef("viewer"), RelationRef("owner")))),
                ),
            ),
        },
        caveats={
            "only_weekdays": Caveat(
                "only_weekdays",
                (CaveatParameter("day", CaveatType("string")),),
                'day != "sat"',
            ),
            "other_caveat": Caveat("other_caveat", (), "true"),
            "unexpired": Caveat(
                "unexpired",
                (
                    CaveatParameter("now", CaveatType("timestamp")),
                    CaveatParameter("expires", CaveatType("timestamp")),
                    CaveatParameter("tags", CaveatType("map", (CaveatType("any"),))),
                ),
                "now < expires",
            ),
        },
    )


def without_relation(schema: Schema, type_name: str, relation: str) -> Schema:
    """``schema`` with one relation of one type removed."""
    d = schema.definitions[type_name]
    relations = {k: v for k, v in d.relations.items() if k != relation}
    definitions = dict(schema.definitions)
    definitions[type_name] = Definition(d.name, relations, d.permissions)
    return Schema(definitions, schema.caveats)


def with_allowed(schema: Schema, type_name: str, relation: str, *allowed: AllowedSubject) -> Schema:
    """``schema`` with the allowed subjects of one relation replaced."""
    d = schema.definitions[type_name]
    relations = dict(d.relations)
    relations[relation] = Relation(relation, allowed)
    definitions = dict(schema.definitions)
    definitions[type_name] = Definition(d.name, relations, d.permissions)
    return Schema(definitions, schema.caveats)


def without_type(schema: Schema, type_name: str) -> Schema:
    """``schema`` with one definition removed."""
    return Schema({k: v for k, v in schema.definitions.items() if k != type_name}, schema.caveats)


def with_caveat_parameters(
    schema: Schema, caveat: str, *parameters: tuple[str, str | CaveatType]
) -> Schema:
    """``schema`` with one caveat's parameters replaced by ``(name, type)`` pairs."""
    old = schema.caveats[caveat]
    declared = tuple(
        CaveatParameter(name, CaveatType(t) if isinstance(t, str) else t) for name, t in parameters
    )
    caveats = {**schema.caveats, caveat: Caveat(old.name, declared, old.expression)}
    return Schema(schema.definitions, caveats)


def without_caveat(schema: Schema, caveat: str) -> Schema:
    """``schema`` with one caveat removed (relations still name it)."""
    return Schema(schema.definitions, {k: v for k, v in schema.caveats.items() if k != caveat})
