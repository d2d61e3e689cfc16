"""TLS: a server with a certificate, a client that trusts it; plaintext clients are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.server import PolicydServer, ServerConfig
from policyd.client import PolicydClient
from policyd.engine import Engine
from policyd.errors import InvalidRequestError, NotFoundError, UnavailableError
from policyd.store.memory import MemoryStore
from tests.certificates import self_signed


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM)."""
    return self_signed(tmp_path)


def test_tls_round_trip(certificate: tuple[bytes, bytes]) -> None:
    cert, key = certificate
    store = MemoryStore()
    config = ServerConfig(listen="127.0.0.1:0", token="t", tls_cert=cert, tls_key=key)
    server = PolicydServer(Engine(store), store, config, CollectorRegistry())
    server.start()
    try:
        secure = PolicydClient(server.address, token="t", tls=cert, retries=0)
        with secure, pytest.raises(NotFoundError):  # reached the server: no policy yet
            secure.read_policy()
        plain = PolicydClient(server.address, token="t", retries=0, timeout=5)
        with plain, pytest.raises(UnavailableError):
            plain.read_policy()
    finally:
        server.stop(grace=1)


def test_tls_needs_cert_and_key(certificate: tuple[bytes, bytes]) -> None:
    store = MemoryStore()
    config = ServerConfig(listen="127.0.0.1:0", token="t", tls_cert=certificate[0])
    with pytest.raises(InvalidRequestError) as caught:
        PolicydServer(Engine(store), store, config, CollectorRegistry())
    assert caught.value.field == "tls"
