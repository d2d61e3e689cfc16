"""Package storefile turns OpenFGA store files (``.fga.yaml``) into SpiceDB validation files.

A store file holds a model (``model`` or ``model_file``), tuples for every test
(``tuples``, ``tuple_file``, ``tuple_files``) and tests, each with tuples of
its own and ``check``, ``list_objects`` and ``list_users`` assertions
(openfga.dev/docs/modeling/store-file-format). Each test becomes one YAML
document that ``policyd validate`` runs: the converted policy as ``schema``,
the tuples as ``relationships`` (written to the stored relation, see
policy.py), and assertions:

- ``check``: ``assertTrue``/``assertFalse`` per relation, with its context;
- ``list_objects``: the answer is a set, and over the objects the tuples name
  a set is its members and non-members, so each listed object is asserted
  true and every other object of the type in the tuples false;
- ``list_users``: likewise over the users of the filter's type in the tuples;
  a listed wildcard (``user:*``) grants every user, so then only the listed
  users are asserted. SpiceDB's checks refuse a wildcard subject, so the
  wildcard itself is not asserted.

Contextual tuples have no equivalent in a validation file, nor CSV tuple
files: both are refused with ConversionError.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policyd.errors import ConversionError, SourceSpan
from policyd.openfga.model import Model, parse_dsl, parse_json
from policyd.openfga.policy import ConvertedModel, to_policy


def load_model(path: Path) -> Model:
    """The model in a ``.fga`` (DSL) or ``.json`` file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return parse_json(text, str(path))
    return parse_dsl(text, str(path))


@dataclass(slots=True)
class _Test:
    name: str
    tuples: list[Mapping[str, Any]]
    assertions: dict[str, list[str]] = field(
        default_factory=lambda: {"assertTrue": [], "assertFalse": []}
    )


def convert_store_file(path: Path) -> str:
    """The validation file (one YAML document per test) for an OpenFGA store file."""
    here = SourceSpan(str(path), 1, 1, 1, 1)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConversionError(f"not YAML: {e}", span=here) from e
    if not isinstance(data, dict):
        raise ConversionError("a store file is a YAML mapping", span=here)
    if "model_file" in data:
        model = load_model(path.parent / str(data["model_file"]))
    elif "model" in data:
        model = parse_dsl(str(data["model"]), f"{path} (model)")
    else:
        raise ConversionError("the store file has neither 'model' nor 'model_file'", span=here)
    converted = to_policy(model)
    shared = _tuples(data, path.parent, here)
    documents = []
    for i, test in enumerate(data.get("tests") or [{"name": "tuples"}]):
        name = str(test.get("name", f"test {i + 1}"))
        converted_test = _Test(name, [*shared, *_tuples(test, path.parent, here)])
        for check in test.get("check") or ():
            _check(converted_test, check, here)
        for listing in test.get("list_objects") or ():
            _list_objects(converted_test, listing)
        for listing in test.get("list_users") or ():
            _list_users(converted_test, listing)
        documents.append(_document(path, converted, converted_test, here))
    return "---\n".join(documents)


def _tuples(data: Mapping[str, Any], base: Path, here: SourceSpan) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = list(data.get("tuples") or ())
    files = list(data.get("tuple_files") or ())
    if data.get("tuple_file"):
        files.append(data["tuple_file"])
    for name in files:
        file = base / str(name)
        if file.suffix == ".csv":
            raise ConversionError(
                f"{file}: CSV tuple files are not converted; use YAML or JSON", span=here
            )
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))  # JSON is YAML too
        found.extend(loaded or ())
    return found


def _context(context: Mapping[str, Any] | None) -> str:
    return f" with {json.dumps(context, sort_keys=True)}" if context else ""


def _check(test: _Test, check: Mapping[str, Any], here: SourceSpan) -> None:
    if check.get("contextual_tuples"):
        raise ConversionError(
            f"test {test.name!r}: contextual tuples have no equivalent in validation files",
            span=here,
        )
    context = _context(check.get("context"))
    users = check["users"] if "users" in check else [check["user"]]
    objects = check["objects"] if "objects" in check else [check["object"]]
    for user in map(str, users):  # an OpenFGA user (user:anne, group:eng#member) is a subject
        for obj in objects:
            for relation, expected in (check.get("assertions") or {}).items():
                line = f"{obj}#{relation}@{user}{context}"
                test.assertions["assertTrue" if expected else "assertFalse"].append(line)


def _named_objects(tuples: Iterable[Mapping[str, Any]], type_name: str) -> set[str]:
    return {str(t["object"]) for t in tuples if str(t["object"]).startswith(f"{type_name}:")}


def _list_objects(test: _Test, listing: Mapping[str, Any]) -> None:
    context = _context(listing.get("context"))
    user, type_name = str(listing["user"]), str(listing["type"])
    for relation, expected in (listing.get("assertions") or {}).items():
        listed = {str(o) for o in expected or ()}
        for obj in sorted(listed | _named_objects(test.tuples, type_name)):
            kind = "assertTrue" if obj in listed else "assertFalse"
            test.assertions[kind].append(f"{obj}#{relation}@{user}{context}")


def _list_users(test: _Test, listing: Mapping[str, Any]) -> None:
    context = _context(listing.get("context"))
    obj = str(listing["object"])
    filters = listing.get("user_filter") or ()
    for relation, expected in (listing.get("assertions") or {}).items():
        listed = {str(u) for u in (expected or {}).get("users") or ()}
        wildcards = {u.partition(":")[0] for u in listed if u.endswith(":*")}
        candidates = set(listed)
        for f in filters:
            suffix = f"#{f['relation']}" if f.get("relation") else ""
            candidates |= {
                str(t["user"])
                for t in test.tuples
                if str(t["user"]).startswith(f"{f['type']}:") and str(t["user"]).endswith(suffix)
            }
        for user in sorted(candidates):
            if user.endswith(":*"):
                continue  # a check cannot ask about a wildcard (see the module docstring)
            if user in listed:
                test.assertions["assertTrue"].append(f"{obj}#{relation}@{user}{context}")
            elif user.partition(":")[0] not in wildcards:
                test.assertions["assertFalse"].append(f"{obj}#{relation}@{user}{context}")


def _relationship(converted: ConvertedModel, t: Mapping[str, Any], here: SourceSpan) -> str:
    obj = str(t["object"])
    type_name = obj.partition(":")[0]
    relation = converted.stored_relation(type_name, str(t["relation"]))
    if relation is None:
        raise ConversionError(
            f"tuple {obj}#{t['relation']}@{t['user']}: {type_name}#{t['relation']} is not "
            "directly assignable in the model",
            span=here,
        )
    text = f"{obj}#{relation}@{t['user']}"
    condition = t.get("condition")
    if condition:
        context = condition.get("context")
        suffix = f":{json.dumps(context, sort_keys=True)}" if context else ""
        text += f"[{condition['name']}{suffix}]"
    return text


def _document(path: Path, converted: ConvertedModel, test: _Test, here: SourceSpan) -> str:
    relationships = "\n".join(_relationship(converted, t, here) for t in test.tuples)
    document: dict[str, Any] = {"schema": converted.text, "relationships": relationships}
    assertions = {k: list(dict.fromkeys(v)) for k, v in test.assertions.items() if v}
    if assertions:
        document["assertions"] = assertions
    header = f"# converted from OpenFGA store file {path.name} by `policyd convert`: {test.name}\n"
    return header + yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so the schema reads as written."""


def _block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _block)


def convert_model_file(path: Path) -> str:
    """The policy text for an OpenFGA model file (``.fga`` or ``.json``)."""
    return to_policy(load_model(path)).text
