from __future__ import annotations

from typing import Any

import grpc
import pytest
from authzed.api.v1 import InsecureClient
from authzed.api.v1 import schema_service_pb2 as pb

from tests.api.authzed.scenario import SCHEMA


@pytest.fixture
def schemas(authzed: InsecureClient) -> Any:
    """The client's SchemaService, untyped.

    The authzed package's stubs (.pyi) lack the reflection calls its generated code serves.
    """
    return authzed


def test_read_schema_returns_the_text_written(authzed: InsecureClient, written: str) -> None:
    assert authzed.ReadSchema(pb.ReadSchemaRequest()).schema_text == SCHEMA


def test_reflect_schema_describes_definitions_relations_and_caveats(
    schemas: Any, written: str
) -> None:
    reflected = schemas.ReflectSchema(pb.ReflectSchemaRequest())
    assert [d.name for d in reflected.definitions] == ["doc", "folder", "group", "user"]
    doc = reflected.definitions[0]
    viewer = next(r for r in doc.relations if r.name == "viewer")
    kinds = [t.WhichOneof("typeref") for t in viewer.subject_types]
    assert kinds == [
        "is_terminal_subject",
        "is_public_wildcard",
        "optional_relation_name",
        "is_terminal_subject",
    ]
    assert viewer.subject_types[3].optional_caveat_name == "ip_allowed"
    assert [p.name for p in doc.permissions] == ["edit", "view", "review"]
    (caveat,) = reflected.caveats
    assert [(p.name, p.type) for p in caveat.parameters] == [
        ("ip", "string"),
        ("allowed", "list<string>"),
    ]
    filtered = schemas.ReflectSchema(
        pb.ReflectSchemaRequest(
            optional_filters=[pb.ReflectionSchemaFilter(optional_definition_name_filter="fo")]
        )
    )
    assert [d.name for d in filtered.definitions] == ["folder"]
    assert not filtered.caveats


def test_dependent_relations_follow_arrows_and_usersets(schemas: Any, written: str) -> None:
    response = schemas.DependentRelations(
        pb.DependentRelationsRequest(definition_name="doc", permission_name="view")
    )
    found = {(r.definition_name, r.relation_name, r.is_permission) for r in response.relations}
    assert found == {
        ("doc", "viewer", False),
        ("doc", "edit", True),
        ("doc", "owner", False),
        ("doc", "editor", False),
        ("doc", "folder", False),
        ("doc", "banned", False),
        ("folder", "view", True),
        ("folder", "viewer", False),
        ("folder", "owner", False),
        ("group", "member", False),
    }


def test_computable_permissions_are_what_a_relation_feeds(schemas: Any, written: str) -> None:
    response = schemas.ComputablePermissions(
        pb.ComputablePermissionsRequest(definition_name="folder", relation_name="owner")
    )
    assert [(r.definition_name, r.relation_name) for r in response.permissions] == [
        ("doc", "view"),
        ("folder", "view"),
    ]


def test_diff_schema_lists_what_changes(schemas: Any, written: str) -> None:
    other = (
        SCHEMA.replace("    relation reviewer: user\n", "").replace(
            "permission review = reviewer & edit", "permission review = edit"
        )
        + "\ndefinition team {}\n"
    )
    diffs = schemas.DiffSchema(pb.DiffSchemaRequest(comparison_schema=other)).diffs
    assert [(d.WhichOneof("diff"), getattr(d, d.WhichOneof("diff")).name) for d in diffs] == [
        ("relation_removed", "reviewer"),
        ("permission_expr_changed", "review"),
        ("definition_added", "team"),
    ]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            pb.DependentRelationsRequest(definition_name="doc", permission_name="viewer"),
            "INVALID_ARGUMENT",
        ),
        (
            pb.DependentRelationsRequest(definition_name="nope", permission_name="x"),
            "FAILED_PRECONDITION",
        ),
    ],
    ids=["a-relation", "unknown-definition"],
)
def test_dependent_relations_of_what_is_no_permission(
    schemas: Any,
    written: str,
    request_: pb.DependentRelationsRequest,
    code: str,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        schemas.DependentRelations(request_)
    assert raised.value.code().name == code
