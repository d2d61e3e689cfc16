"""Package policies serves PolicyService: write, read and validate the policy text."""

from __future__ import annotations

import grpc

from policyd.api.convert import (
    consistency_from_proto,
    diagnostic_to_proto,
    required,
    token_to_proto,
)
from policyd.api.gen import policy_service_pb2 as pb
from policyd.api.gen import policy_service_pb2_grpc
from policyd.api.limits import check_deadline
from policyd.dsl.compiler import compile_policy
from policyd.engine import Engine
from policyd.errors import Diagnostic, PolicyErrors, PolicySyntaxError

DEFAULT_SOURCE_NAME = "<policy>"


class PolicyServicer(policy_service_pb2_grpc.PolicyServiceServicer):
    """WritePolicy, ReadPolicy and ValidatePolicy over one Engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def WritePolicy(
        self, request: pb.WritePolicyRequest, context: grpc.ServicerContext
    ) -> pb.WritePolicyResponse:
        """Compile and store the policy; errors carry the diagnostics or the blockers."""
        check_deadline(context)
        written = self._engine.write_policy(
            required(request.policy, "policy"), request.source_name or DEFAULT_SOURCE_NAME
        )
        return pb.WritePolicyResponse(
            consistency_token=token_to_proto(written.token),
            warnings=[diagnostic_to_proto(w) for w in written.warnings],
        )

    def ReadPolicy(
        self, request: pb.ReadPolicyRequest, context: grpc.ServicerContext
    ) -> pb.ReadPolicyResponse:
        """The policy text in force."""
        check_deadline(context)
        text, revision = self._engine.read_policy(consistency_from_proto(request.consistency))
        return pb.ReadPolicyResponse(
            consistency_token=token_to_proto(self._engine.tokens.token(revision)), policy=text
        )

    def ValidatePolicy(
        self, request: pb.ValidatePolicyRequest, context: grpc.ServicerContext
    ) -> pb.ValidatePolicyResponse:
        """Compile without storing and report every diagnostic."""
        check_deadline(context)
        text = required(request.policy, "policy")
        diagnostics: tuple[Diagnostic, ...]
        try:
            diagnostics = compile_policy(text, request.source_name or DEFAULT_SOURCE_NAME).warnings
            valid = True
        except PolicyErrors as e:
            diagnostics, valid = e.diagnostics, False
        except PolicySyntaxError as e:
            if e.span is None:
                raise
            diagnostics, valid = (Diagnostic(e.span, e.code, e.message),), False
        return pb.ValidatePolicyResponse(
            valid=valid,
            diagnostics=[diagnostic_to_proto(d) for d in diagnostics],
            consistency_token=token_to_proto(
                self._engine.tokens.token(self._engine.revision_for(None))
            ),
        )
