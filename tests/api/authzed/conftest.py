"""The official ``authzed`` client against the policyd server of tests/api/conftest.py."""

from __future__ import annotations

import pytest
from authzed.api.v1 import InsecureClient, schema_service_pb2
from authzed.api.v1 import permission_service_pb2 as pb

from policyd.api.server import PolicydServer
from tests.api.authzed.scenario import SCHEMA, TOUCH, rel, update


@pytest.fixture
def authzed(server: PolicydServer) -> InsecureClient:
    return InsecureClient(server.address, "s3cret")


@pytest.fixture
def written(authzed: InsecureClient) -> str:
    """The scenario's schema and a few relationships; returns the write's ZedToken."""
    authzed.WriteSchema(schema_service_pb2.WriteSchemaRequest(schema=SCHEMA))
    response = authzed.WriteRelationships(
        pb.WriteRelationshipsRequest(
            updates=update(
                TOUCH,
                *(rel(f"doc:d{i}#viewer@user:alice") for i in range(7)),
                rel("doc:d1#banned@user:carol"),
                rel("doc:d2#viewer@user:*"),
                rel("doc:d3#viewer@user:erin", caveat=("ip_allowed", {"allowed": ["10.0.0.1"]})),
                rel("doc:d4#editor@user:frank", expires="2100-01-01T00:00:00Z"),
                rel("group:eng#member@user:bob"),
                rel("folder:f1#viewer@group:eng#member"),
                rel("doc:d1#folder@folder:f1"),
            )
        )
    )
    return str(response.written_at.token)
