"""Package schema serves authzed.api.v1's SchemaService: the policy as SpiceDB's schema.

policyd's policy language is SpiceDB's schema language, so WriteSchema is
``Engine.write_policy`` and ReadSchema hands back the text in force. SpiceDB
regenerates its text from the compiled schema; policyd returns the text as
written (comments and layout kept), which compiles to the same schema.
Reflection reads the compiled Schema (reflection.py).
"""

from __future__ import annotations

from authzed.api.v1 import schema_service_pb2 as pb
from authzed.api.v1 import schema_service_pb2_grpc

from policyd.api.authzed.convert import consistency_from_proto, zedtoken
from policyd.api.authzed.errors import (
    Names,
    invalid_argument,
    schema_change_blocked,
    spicedb_errors,
    translate,
    unknown_definition,
    unknown_relation,
)
from policyd.api.authzed.reflection import (
    computable_permissions,
    dependent_relations,
    diff,
    reflect,
)
from policyd.api.errors import RichStatusError
from policyd.api.scheduling import Context, Threads
from policyd.consistency import Consistency
from policyd.dsl.compiler import compile_policy
from policyd.engine import Engine
from policyd.errors import PolicyChangeRefusedError, PolicydError
from policyd.schema.ir import Definition, Schema
from policyd.store.base import Store

SOURCE_NAME = "schema"
"""The source name of written schemas, as SpiceDB names it in parse errors."""


class SchemaServicer(schema_service_pb2_grpc.SchemaServiceServicer):
    """ReadSchema, WriteSchema and the reflection calls over one Engine."""

    def __init__(self, engine: Engine, store: Store, writes: Threads, reads: Threads) -> None:
        self._engine = engine
        self._store = store
        self._writes = writes
        self._reads = reads

    async def ReadSchema(
        self, request: pb.ReadSchemaRequest, context: Context
    ) -> pb.ReadSchemaResponse:
        """The schema text in force (SpiceDB reads it fully consistent)."""
        with spicedb_errors():
            text, revision = self._engine.read_policy(Consistency.fully_consistent())
        return pb.ReadSchemaResponse(
            schema_text=text, read_at=zedtoken(self._engine.tokens.token(revision))
        )

    async def WriteSchema(
        self, request: pb.WriteSchemaRequest, context: Context
    ) -> pb.WriteSchemaResponse:
        """Compile and store the schema; refused if it would orphan stored relationships."""
        try:
            written = await self._writes.run(self._engine.write_policy, request.schema, SOURCE_NAME)
        except PolicyChangeRefusedError as e:
            refusal = await self._reads.run(self._refusal, request.schema)
            raise (refusal or translate(e, Names())) from e
        except PolicydError as e:
            raise translate(e, Names()) from e
        return pb.WriteSchemaResponse(written_at=zedtoken(written.token))

    def _refusal(self, text: str) -> RichStatusError | None:
        """SpiceDB's error for a schema change that stored relationships block, if it finds one.

        SpiceDB names the first change it finds blocked and one relationship in
        the way (internal/services/shared/schema.go); policyd's refusal lists
        every blocked shape, so the change is found again here, in SpiceDB's order.
        """
        at_head = Consistency.fully_consistent()
        current = self._engine.schema(at_head)
        new = compile_policy(text, SOURCE_NAME).schema
        snapshot = self._store.snapshot(self._engine.revision_for(at_head))
        return schema_change_blocked(current, new, snapshot)

    def _schema(self, consistency: Consistency) -> tuple[Schema, str]:
        with spicedb_errors():
            revision = self._engine.revision_for(consistency)
            token = self._engine.tokens.token(revision)
            return self._engine.schema(Consistency.at_exact_snapshot(token)), token

    async def ReflectSchema(
        self, request: pb.ReflectSchemaRequest, context: Context
    ) -> pb.ReflectSchemaResponse:
        """Definitions, relations, permissions and caveats, filtered by name prefixes."""
        schema, token = self._schema(consistency_from_proto(request.consistency))
        response = reflect(schema, request.optional_filters)
        response.read_at.CopyFrom(zedtoken(token))
        return response

    async def ComputablePermissions(
        self, request: pb.ComputablePermissionsRequest, context: Context
    ) -> pb.ComputablePermissionsResponse:
        """The relations and permissions computed from one relation, transitively."""
        schema, token = self._schema(consistency_from_proto(request.consistency))
        _member(schema, request.definition_name, request.relation_name)
        return pb.ComputablePermissionsResponse(
            permissions=computable_permissions(
                schema,
                (request.definition_name, request.relation_name),
                request.optional_definition_name_filter,
            ),
            read_at=zedtoken(token),
        )

    async def DependentRelations(
        self, request: pb.DependentRelationsRequest, context: Context
    ) -> pb.DependentRelationsResponse:
        """The relations and permissions one permission is computed from, transitively."""
        schema, token = self._schema(consistency_from_proto(request.consistency))
        definition = _member(schema, request.definition_name, request.permission_name)
        if request.permission_name not in definition.permissions:
            raise invalid_argument(
                f"`{request.permission_name}` is not a permission under definition "
                f"`{request.definition_name}`"
            )
        return pb.DependentRelationsResponse(
            relations=dependent_relations(
                schema, (request.definition_name, request.permission_name)
            ),
            read_at=zedtoken(token),
        )

    async def DiffSchema(
        self, request: pb.DiffSchemaRequest, context: Context
    ) -> pb.DiffSchemaResponse:
        """What changes from the schema in force to ``comparison_schema``."""
        schema, token = self._schema(consistency_from_proto(request.consistency))
        with spicedb_errors(Names()):
            other = compile_policy(request.comparison_schema, SOURCE_NAME).schema
        return pb.DiffSchemaResponse(diffs=diff(schema, other), read_at=zedtoken(token))


def _member(schema: Schema, definition_name: str, name: str) -> Definition:
    """The definition, if it has the member ``name``; SpiceDB's errors otherwise."""
    definition = schema.definition(definition_name)
    if definition is None:
        raise unknown_definition(definition_name)
    if definition.member(name) is None:
        raise unknown_relation(definition_name, name)
    return definition
