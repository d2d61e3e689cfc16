"""Package model reads OpenFGA authorization models, DSL (schema 1.1) or JSON, into one tree.

The tree follows OpenFGA's JSON form (openfga.v1.AuthorizationModel): per type,
each relation's userset rewrite (``this``, computed usersets, tuple-to-userset,
union, intersection, difference) with the directly related user types of its
``this``, and the conditions with their typed parameters. The DSL reader
follows OpenFGA's grammar (openfga/language, OpenFGAParser.g4): a relation is
a direct assignment, a name, ``name from tupleset`` or a parenthesized
definition, followed by ``or`` terms, ``and`` terms, or one ``but not`` term;
``#`` starts a comment. Modular models (schema 1.2, ``module``, ``extend
type``) and schema 1.0 are refused with ConversionError.

The tree and its two readers stay in one module, over 500 lines: each reader
builds exactly the tree's node types, and a construct is added to all three
at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from policyd.errors import ConversionError, PolicySyntaxError, SourceSpan


@dataclass(frozen=True, slots=True)
class TypeRestriction:
    """One directly related user type: ``user``, ``user:*``, ``group#member``, ``… with cond``."""

    type: str
    relation: str | None = None
    wildcard: bool = False
    condition: str | None = None


@dataclass(frozen=True, slots=True)
class Direct:
    """The relationships stored on the relation (OpenFGA's ``this``), of the restricted types."""

    types: tuple[TypeRestriction, ...]


@dataclass(frozen=True, slots=True)
class Computed:
    """Another relation of the same object (a computed userset)."""

    relation: str


@dataclass(frozen=True, slots=True)
class TupleToUserset:
    """``computed from tupleset``: ``computed`` on the objects ``tupleset`` points to."""

    tupleset: str
    computed: str


@dataclass(frozen=True, slots=True)
class Union:
    """``a or b``."""

    children: tuple[Rewrite, ...]


@dataclass(frozen=True, slots=True)
class Intersection:
    """``a and b``."""

    children: tuple[Rewrite, ...]


@dataclass(frozen=True, slots=True)
class Difference:
    """``base but not subtract``."""

    base: Rewrite
    subtract: Rewrite


Rewrite: TypeAlias = Direct | Computed | TupleToUserset | Union | Intersection | Difference


@dataclass(frozen=True, slots=True)
class RelationDef:
    """``define name: rewrite``."""

    name: str
    rewrite: Rewrite
    span: SourceSpan


@dataclass(frozen=True, slots=True)
class TypeDef:
    """``type name`` with its relations, in order."""

    name: str
    relations: tuple[RelationDef, ...]
    span: SourceSpan


@dataclass(frozen=True, slots=True)
class ConditionParam:
    """A typed condition parameter; ``type`` is OpenFGA's spelling, ``list<string>``."""

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Condition:
    """``condition name(params) { CEL }``."""

    name: str
    params: tuple[ConditionParam, ...]
    expression: str
    span: SourceSpan


@dataclass(frozen=True, slots=True)
class Model:
    """An authorization model: types and conditions, and the file it came from."""

    source: str
    types: tuple[TypeDef, ...]
    conditions: tuple[Condition, ...]

    def type(self, name: str) -> TypeDef | None:
        """The type called ``name``, if any."""
        return next((t for t in self.types if t.name == name), None)


def _span(source: str, line: int, column: int = 1) -> SourceSpan:
    return SourceSpan(source, line, column, line, column)


# ---- DSL ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<but_not>but\s+not\b)|(?P<punct>:\*|[\[\](),:#])|(?P<word>[^\s\[\](),:#]+))"
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "punct", "but_not" or "end"
    text: str
    column: int


class _RelationParser:
    """One relation definition's expression, by recursive descent over its tokens."""

    def __init__(self, text: str, source: str, line: int, column: int) -> None:
        self.tokens: list[_Token] = []
        position = 0
        while position < len(text):
            found = _TOKEN.match(text, position)
            if found is None or found.end() == position:
                if text[position:].strip():
                    self._fail_at(column + position, f"unexpected {text[position:].strip()!r}")
                break
            kind = found.lastgroup or "end"
            self.tokens.append(_Token(kind, found[kind], column + found.start(kind)))
            position = found.end()
        self.tokens.append(_Token("end", "", column + len(text)))
        self.index = 0
        self.source, self.line = source, line

    def _fail_at(self, column: int, message: str) -> None:
        raise PolicySyntaxError(message, span=_span(self.source, self.line, column))

    def fail(self, message: str) -> None:
        self._fail_at(self.peek().column, message)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self, text: str | None = None) -> _Token:
        token = self.peek()
        if text is not None and token.text != text:
            self.fail(f"expected {text!r}, found {token.text or 'the end of the line'!r}")
        self.index += 1
        return token

    def word(self, what: str) -> str:
        token = self.peek()
        if token.kind != "word" or token.text in ("or", "and", "from", "with"):
            self.fail(f"expected {what}, found {token.text or 'the end of the line'!r}")
        return self.take().text

    def parse(self) -> Rewrite:
        rewrite = self.definition()
        if self.peek().kind != "end":
            self.fail(f"unexpected {self.peek().text!r}")
        return rewrite

    def definition(self) -> Rewrite:
        """``primary`` then ``or`` terms, ``and`` terms, or one ``but not`` term."""
        first = self.primary(direct=True)
        token = self.peek()
        if token.text in ("or", "and"):
            operator = token.text
            children = [first]
            while self.peek().text == operator:
                self.take()
                children.append(self.primary(direct=False))
            if self.peek().text in ("or", "and") or self.peek().kind == "but_not":
                self.fail(f"mix of '{operator}' and '{self.peek().text}': add parentheses")
            return Union(tuple(children)) if operator == "or" else Intersection(tuple(children))
        if token.kind == "but_not":
            self.take()
            subtract = self.primary(direct=False)
            if self.peek().kind == "but_not" or self.peek().text in ("or", "and"):
                self.fail("only one 'but not' per definition: add parentheses")
            return Difference(first, subtract)
        return first

    def primary(self, *, direct: bool) -> Rewrite:
        token = self.peek()
        if token.text == "[":
            if not direct:
                self.fail("a direct assignment [...] must come first")
            return self.direct()
        if token.text == "(":
            self.take()
            inner = self.definition()
            self.take(")")
            return inner
        name = self.word("a relation name, '[' or '('")
        if self.peek().text == "from":
            self.take()
            return TupleToUserset(self.word("the tupleset relation after 'from'"), name)
        return Computed(name)

    def direct(self) -> Direct:
        self.take("[")
        types = [self.restriction()]
        while self.peek().text == ",":
            self.take()
            types.append(self.restriction())
        self.take("]")
        return Direct(tuple(types))

    def restriction(self) -> TypeRestriction:
        type_name = self.word("a type")
        relation: str | None = None
        wildcard = False
        if self.peek().text == ":*":
            self.take()
            wildcard = True
        elif self.peek().text == "#":
            self.take()
            relation = self.word("a relation after '#'")
        condition: str | None = None
        if self.peek().text == "with":
            self.take()
            condition = self.word("a condition name after 'with'")
        return TypeRestriction(type_name, relation, wildcard, condition)


def _strip_comment(line: str) -> str:
    """The line without a ``#`` comment (a ``#`` after a space, or starting the line)."""
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return ""
    found = re.search(r"\s#", line)
    return line[: found.start()] if found else line


_CONDITION = re.compile(r"condition\s+(\w+)\s*\((.*?)\)\s*\{(.*)\}\s*\Z", re.DOTALL)


def parse_dsl(text: str, source: str = "<model>") -> Model:
    """An OpenFGA DSL model (schema 1.1).

    Raises:
        PolicySyntaxError: the text does not parse, with its line and column.
        ConversionError: a modular model or another schema version.
    """
    lines = text.splitlines()
    types: list[TypeDef] = []
    conditions: list[Condition] = []
    current: tuple[str, int, list[RelationDef]] | None = None
    schema_seen = False
    i = 0

    def close_type() -> None:
        if current is not None:
            name, line, relations = current
            types.append(TypeDef(name, tuple(relations), _span(source, line)))

    while i < len(lines):
        raw = lines[i]
        line = _strip_comment(raw).rstrip()
        number = i + 1
        i += 1
        if not line.strip():
            continue
        words = line.split()
        head = words[0]
        if head == "model":
            continue
        if head == "schema":
            version = words[1] if len(words) > 1 else ""
            if version != "1.1":
                raise ConversionError(
                    f"OpenFGA schema {version or '(none)'}: only schema 1.1 converts "
                    "(1.0 has no type restrictions; 1.2 is modular: combine its modules first)",
                    span=_span(source, number),
                )
            schema_seen = True
        elif head in ("module", "extend"):
            raise ConversionError(
                "modular models (module, extend type) have no equivalent here: combine the "
                "modules into one schema 1.1 model first",
                span=_span(source, number),
            )
        elif head == "type":
            close_type()
            if len(words) != 2:
                raise PolicySyntaxError("expected 'type NAME'", span=_span(source, number))
            current = (words[1], number, [])
        elif head == "relations":
            if current is None:
                raise PolicySyntaxError("'relations' outside a type", span=_span(source, number))
        elif head == "define":
            if current is None:
                raise PolicySyntaxError("'define' outside a type", span=_span(source, number))
            body = line
            while body.count("[") > body.count("]") or body.count("(") > body.count(")"):
                if i >= len(lines):
                    break
                body += " " + _strip_comment(lines[i]).strip()
                i += 1
            current[2].append(_relation(body, source, number))
        elif head == "condition" or head.startswith("condition"):
            close_type()
            current = None
            start = number
            block = line
            while block.count("{") == 0 or block.count("{") > block.count("}"):
                if i >= len(lines):
                    raise PolicySyntaxError(
                        "condition without its closing '}'", span=_span(source, start)
                    )
                block += "\n" + lines[i]
                i += 1
            conditions.append(_condition(block.strip(), source, start))
        else:
            raise PolicySyntaxError(
                f"unexpected {head!r}: expected model, schema, type, relations, define or "
                "condition",
                span=_span(source, number),
            )
    close_type()
    if not schema_seen:
        raise ConversionError(
            "no 'schema 1.1' line: only schema 1.1 models convert", span=_span(source, 1)
        )
    return Model(source, tuple(types), tuple(conditions))


def _relation(line: str, source: str, number: int) -> RelationDef:
    head, colon, body = line.partition(":")
    words = head.split()
    if not colon or len(words) != 2:
        raise PolicySyntaxError("expected 'define NAME: …'", span=_span(source, number))
    column = len(head) + 2 + (len(body) - len(body.lstrip()))
    parser = _RelationParser(body.strip(), source, number, column)
    indent = len(line) - len(line.lstrip())
    return RelationDef(words[1], parser.parse(), _span(source, number, indent + 1))


def _condition(block: str, source: str, number: int) -> Condition:
    found = _CONDITION.match(block)
    if found is None:
        raise PolicySyntaxError(
            "expected 'condition NAME(PARAM: TYPE, …) { EXPRESSION }'", span=_span(source, number)
        )
    params = []
    for part in found[2].split(","):
        name, colon, type_name = part.partition(":")
        if not colon or not name.strip() or not type_name.strip():
            raise PolicySyntaxError(
                f"expected 'NAME: TYPE' in the parameters of {found[1]}, got {part.strip()!r}",
                span=_span(source, number),
            )
        params.append(ConditionParam(name.strip(), re.sub(r"\s+", "", type_name)))
    expression = "\n".join(line.strip() for line in found[3].strip().splitlines())
    return Condition(found[1], tuple(params), expression, _span(source, number))


# ---- JSON --------------------------------------------------------------------------------------

_JSON_TYPES = {
    "TYPE_NAME_ANY": "any",
    "TYPE_NAME_BOOL": "bool",
    "TYPE_NAME_STRING": "string",
    "TYPE_NAME_INT": "int",
    "TYPE_NAME_UINT": "uint",
    "TYPE_NAME_DOUBLE": "double",
    "TYPE_NAME_DURATION": "duration",
    "TYPE_NAME_TIMESTAMP": "timestamp",
    "TYPE_NAME_IPADDRESS": "ipaddress",
    "TYPE_NAME_LIST": "list",
    "TYPE_NAME_MAP": "map",
}


def parse_json(text: str, source: str = "<model>") -> Model:
    """An OpenFGA model in its JSON form (as ``fga model get --format json`` prints it).

    Raises:
        PolicySyntaxError: not JSON, or not an authorization model.
        ConversionError: a schema version other than 1.1.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PolicySyntaxError(f"not JSON: {e.msg}", span=_span(source, e.lineno, e.colno)) from e
    if isinstance(data, dict) and "authorization_model" in data:
        data = data["authorization_model"]
    if not isinstance(data, dict) or not isinstance(data.get("type_definitions"), list):
        raise PolicySyntaxError(
            "expected an authorization model with 'type_definitions'", span=_span(source, 1)
        )
    version = str(data.get("schema_version", ""))
    if version != "1.1":
        raise ConversionError(
            f"OpenFGA schema {version or '(none)'}: only schema 1.1 converts",
            span=_span(source, 1),
        )
    here = _span(source, 1)
    types = tuple(_json_type(t, here) for t in data["type_definitions"])
    conditions = tuple(
        Condition(
            name,
            tuple(
                ConditionParam(param, _json_param_type(spec, here))
                for param, spec in (condition.get("parameters") or {}).items()
            ),
            str(condition.get("expression", "")),
            here,
        )
        for name, condition in (data.get("conditions") or {}).items()
    )
    return Model(source, types, conditions)


def _json_type(data: Mapping[str, Any], span: SourceSpan) -> TypeDef:
    metadata = (data.get("metadata") or {}).get("relations") or {}
    relations = tuple(
        RelationDef(
            name,
            _json_rewrite(
                rewrite, (metadata.get(name) or {}).get("directly_related_user_types"), span
            ),
            span,
        )
        for name, rewrite in (data.get("relations") or {}).items()
    )
    return TypeDef(str(data["type"]), relations, span)


def _json_rewrite(data: Mapping[str, Any], direct: Any, span: SourceSpan) -> Rewrite:
    def child(node: Mapping[str, Any]) -> Rewrite:
        return _json_rewrite(node, direct, span)

    if "this" in data:
        return Direct(tuple(_json_restriction(r) for r in direct or ()))
    if "computedUserset" in data:
        return Computed(str(data["computedUserset"]["relation"]))
    if "tupleToUserset" in data:
        ttu = data["tupleToUserset"]
        return TupleToUserset(
            str(ttu["tupleset"]["relation"]), str(ttu["computedUserset"]["relation"])
        )
    if "union" in data:
        return Union(tuple(child(c) for c in data["union"]["child"]))
    if "intersection" in data:
        return Intersection(tuple(child(c) for c in data["intersection"]["child"]))
    if "difference" in data:
        return Difference(child(data["difference"]["base"]), child(data["difference"]["subtract"]))
    raise PolicySyntaxError(f"unknown userset rewrite {sorted(data)}", span=span)


def _json_restriction(data: Mapping[str, Any]) -> TypeRestriction:
    return TypeRestriction(
        str(data["type"]),
        str(data["relation"]) if data.get("relation") else None,
        "wildcard" in data,
        str(data["condition"]) if data.get("condition") else None,
    )


def _json_param_type(data: Mapping[str, Any], span: SourceSpan) -> str:
    name = _JSON_TYPES.get(str(data.get("type_name")))
    if name is None:
        raise ConversionError(
            f"unknown condition parameter type {data.get('type_name')!r}", span=span
        )
    generics = [_json_param_type(g, span) for g in data.get("generic_types") or ()]
    return f"{name}<{', '.join(generics)}>" if generics else name


def walk(rewrite: Rewrite) -> Iterator[Rewrite]:
    """Every node of a rewrite, parents first."""
    yield rewrite
    match rewrite:
        case Union(children=children) | Intersection(children=children):
            for c in children:
                yield from walk(c)
        case Difference(base=base, subtract=subtract):
            yield from walk(base)
            yield from walk(subtract)
        case _:
            pass
