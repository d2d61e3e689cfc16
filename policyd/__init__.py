"""policyd: relationship-based authorization (Zanzibar-style) for AT Protocol data.

The public, in-process API lives here; ``import policyd`` loads neither grpc
nor psycopg.
"""

from policyd.errors import PolicydError

__all__ = ["PolicydError"]
__version__ = "0.1.0"
