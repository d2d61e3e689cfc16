"""Package limits holds the service's configurable request and result limits and deadline checks."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from policyd.errors import PolicydError

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one request's work; every streaming RPC pages by ``page_size``."""

    page_size: int = 1000
    max_batch_size: int = 1000
    max_updates: int = 1000
    watch_poll_seconds: float = 0.05
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES


def check_deadline(context: grpc.ServicerContext) -> None:
    """Refuse work whose deadline has already passed."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise PolicydError("the deadline passed before the call started", code="deadline-exceeded")
