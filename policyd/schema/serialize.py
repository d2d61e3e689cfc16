"""Package serialize turns a compiled Schema into JSON and back, so stores keep the compiled form.

Stores sit below the language layer and cannot compile policy text; they keep
this JSON next to the text and load it to validate writes. Spans are not kept.
"""

from __future__ import annotations

import json
from typing import Any, assert_never

from policyd.errors import InternalError
from policyd.schema.ir import (
    AllowedSubject,
    Arrow,
    ArrowKind,
    Caveat,
    CaveatParameter,
    CaveatType,
    Definition,
    Exclusion,
    Intersection,
    Nil,
    Permission,
    Relation,
    RelationRef,
    Rewrite,
    Schema,
    SelfRef,
    Union,
)

FORMAT_VERSION = 1


def schema_to_json(schema: Schema) -> str:
    """Serialise a schema to compact, deterministic JSON."""
    doc = {
        "version": FORMAT_VERSION,
        "definitions": [_definition_out(d) for d in schema.definitions.values()],
        "caveats": [_caveat_out(c) for c in schema.caveats.values()],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def schema_from_json(text: str) -> Schema:
    """Load a schema written by ``schema_to_json``."""
    try:
        doc = json.loads(text)
        if doc.get("version") != FORMAT_VERSION:
            raise InternalError(f"unsupported compiled schema version {doc.get('version')!r}")
        definitions = [_definition_in(d) for d in doc["definitions"]]
        caveats = [_caveat_in(c) for c in doc["caveats"]]
    except (KeyError, TypeError, ValueError) as e:
        raise InternalError(f"stored compiled schema is corrupt: {e}") from e
    return Schema(
        definitions={d.name: d for d in definitions},
        caveats={c.name: c for c in caveats},
    )


def _definition_out(d: Definition) -> dict[str, Any]:
    return {
        "name": d.name,
        "doc": d.doc,
        "relations": [
            {"name": r.name, "doc": r.doc, "allowed": [_allowed_out(a) for a in r.allowed]}
            for r in d.relations.values()
        ],
        "permissions": [
            {
                "name": p.name,
                "doc": p.doc,
                "subject_types": list(p.subject_types),
                "rewrite": _rewrite_out(p.rewrite),
            }
            for p in d.permissions.values()
        ],
    }


def _definition_in(d: dict[str, Any]) -> Definition:
    relations = [
        Relation(r["name"], tuple(_allowed_in(a) for a in r["allowed"]), r["doc"])
        for r in d["relations"]
    ]
    permissions = [
        Permission(p["name"], _rewrite_in(p["rewrite"]), p["doc"], tuple(p["subject_types"]))
        for p in d["permissions"]
    ]
    return Definition(
        name=d["name"],
        relations={r.name: r for r in relations},
        permissions={p.name: p for p in permissions},
        doc=d["doc"],
    )


def _allowed_out(a: AllowedSubject) -> dict[str, Any]:
    return {
        "type": a.type,
        "relation": a.relation,
        "wildcard": a.wildcard,
        "caveat": a.caveat,
        "expiration": a.expiration,
    }


def _allowed_in(a: dict[str, Any]) -> AllowedSubject:
    return AllowedSubject(a["type"], a["relation"], a["wildcard"], a["caveat"], a["expiration"])


def _rewrite_out(node: Rewrite) -> dict[str, Any]:
    match node:
        case Nil():
            return {"op": "nil"}
        case SelfRef():
            return {"op": "self"}
        case RelationRef(name=name):
            return {"op": "ref", "name": name}
        case Arrow(tupleset=tupleset, target=target, kind=kind):
            return {"op": "arrow", "tupleset": tupleset, "target": target, "kind": kind.value}
        case Union(children=children):
            return {"op": "union", "children": [_rewrite_out(c) for c in children]}
        case Intersection(children=children):
            return {"op": "intersection", "children": [_rewrite_out(c) for c in children]}
        case Exclusion(base=base, subtract=subtract):
            return {
                "op": "exclusion",
                "base": _rewrite_out(base),
                "subtract": _rewrite_out(subtract),
            }
        case _:
            assert_never(node)


def _rewrite_in(d: dict[str, Any]) -> Rewrite:
    op = d["op"]
    if op == "nil":
        return Nil()
    if op == "self":
        return SelfRef()
    if op == "ref":
        return RelationRef(d["name"])
    if op == "arrow":
        return Arrow(d["tupleset"], d["target"], ArrowKind(d["kind"]))
    if op == "union":
        return Union(tuple(_rewrite_in(c) for c in d["children"]))
    if op == "intersection":
        return Intersection(tuple(_rewrite_in(c) for c in d["children"]))
    if op == "exclusion":
        return Exclusion(_rewrite_in(d["base"]), _rewrite_in(d["subtract"]))
    raise InternalError(f"unknown rewrite op {op!r} in stored schema")


def _caveat_type_out(t: CaveatType) -> dict[str, Any]:
    return {"name": t.name, "args": [_caveat_type_out(a) for a in t.args]}


def _caveat_type_in(d: dict[str, Any]) -> CaveatType:
    return CaveatType(d["name"], tuple(_caveat_type_in(a) for a in d["args"]))


def _caveat_out(c: Caveat) -> dict[str, Any]:
    return {
        "name": c.name,
        "doc": c.doc,
        "expression": c.expression,
        "parameters": [{"name": p.name, "type": _caveat_type_out(p.type)} for p in c.parameters],
    }


def _caveat_in(d: dict[str, Any]) -> Caveat:
    params = tuple(CaveatParameter(p["name"], _caveat_type_in(p["type"])) for p in d["parameters"])
    return Caveat(d["name"], params, d["expression"], d["doc"])
