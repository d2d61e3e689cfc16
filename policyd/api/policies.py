"""Package policies serves PolicyService: write, read and validate the policy text."""

from __future__ import annotations

from policyd.api.convert import (
    consistency_from_proto,
    diagnostic_to_proto,
    required,
    token_to_proto,
)
from policyd.api.gen import policy_service_pb2 as pb
from policyd.api.gen import policy_service_pb2_grpc
from policyd.api.scheduling import Context, Threads
from policyd.engine import Engine

DEFAULT_SOURCE_NAME = "<policy>"


class PolicyServicer(policy_service_pb2_grpc.PolicyServiceServicer):
    """WritePolicy, ReadPolicy and ValidatePolicy over one Engine.

    Writing and compiling run in ``writes``' threads: a large policy's checks
    against stored relationships take the store's time, not the loop's.
    """

    def __init__(self, engine: Engine, writes: Threads) -> None:
        self._engine = engine
        self._writes = writes

    async def WritePolicy(
        self, request: pb.WritePolicyRequest, context: Context
    ) -> pb.WritePolicyResponse:
        """Compile and store the policy; errors carry the diagnostics or the blockers."""
        written = await self._writes.run(
            self._engine.write_policy,
            required(request.policy, "policy"),
            request.source_name or DEFAULT_SOURCE_NAME,
        )
        return pb.WritePolicyResponse(
            consistency_token=token_to_proto(written.token),
            warnings=[diagnostic_to_proto(w) for w in written.warnings],
        )

    async def ReadPolicy(
        self, request: pb.ReadPolicyRequest, context: Context
    ) -> pb.ReadPolicyResponse:
        """The policy text in force."""
        text, revision = self._engine.read_policy(consistency_from_proto(request.consistency))
        return pb.ReadPolicyResponse(
            consistency_token=token_to_proto(self._engine.tokens.token(revision)), policy=text
        )

    async def ValidatePolicy(
        self, request: pb.ValidatePolicyRequest, context: Context
    ) -> pb.ValidatePolicyResponse:
        """The dry run of WritePolicy: every diagnostic and blocker, nothing stored."""
        text = required(request.policy, "policy")
        source = request.source_name or DEFAULT_SOURCE_NAME
        checked = await self._writes.run(self._engine.validate_policy, text, source)
        return pb.ValidatePolicyResponse(
            valid=checked.valid,
            diagnostics=[diagnostic_to_proto(d) for d in checked.diagnostics],
            consistency_token=token_to_proto(
                self._engine.tokens.token(self._engine.revision_for(None))
            ),
            blockers=checked.blockers,
        )
