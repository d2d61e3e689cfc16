"""Package testing holds loopback stand-ins for atproto identity: DIDs with keys, a DID directory.

Tests and ``policyd bench`` use them, never the server. ``Identity`` is a DID
with a freshly generated key, its DID document and the service-auth tokens it
signs. ``DirectoryServer`` serves DID documents over HTTP on 127.0.0.1 the way a
PLC directory does (``GET /{did}``) and the way a did:web host does (``GET
/.well-known/did.json`` for ``did:web:127.0.0.1%3A{port}``); it records the
paths asked and can hold answers back until released, to test timeouts
without sleeping.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from policyd.atproto.keys import ES256K, Keypair
from policyd.atproto.service_auth import mint_service_jwt

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def random_plc_did() -> str:
    """A did:plc of the right shape (24 base32 characters); no PLC operation stands behind it."""
    return "did:plc:" + "".join(secrets.choice(_BASE32) for _ in range(24))


@dataclass
class Identity:
    """A DID, its signing key, and the document that publishes the key under ``#fragment``."""

    did: str
    keypair: Keypair = field(default_factory=lambda: Keypair(ES256K))
    fragment: str = "atproto"

    def document(self, *, legacy: bool = False) -> dict[str, Any]:
        """The DID document, with the key as Multikey or in the legacy 2019 form."""
        if legacy:
            kind = (
                "EcdsaSecp256k1VerificationKey2019"
                if self.keypair.algorithm == ES256K
                else "EcdsaSecp256r1VerificationKey2019"
            )
            encoded = self.keypair.legacy_multibase()
        else:
            kind, encoded = "Multikey", self.keypair.public.multikey
        return {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": self.did,
            "alsoKnownAs": [],
            "verificationMethod": [
                {
                    "id": f"{self.did}#{self.fragment}",
                    "type": kind,
                    "controller": self.did,
                    "publicKeyMultibase": encoded,
                }
            ],
            "service": [],
        }

    def token(self, audience: str, method: str, **overrides: Any) -> str:
        """A service-auth JWT from this DID (see ``mint_service_jwt`` for the overrides)."""
        return mint_service_jwt(self.keypair, self.did, audience, method, **overrides)


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hung up first (a resolver that timed out, say)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class DirectoryServer:
    """DID documents over HTTP on 127.0.0.1: a PLC directory and one did:web host in one."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        """Answers by path: ``/{did}`` for the PLC, ``/.well-known/did.json`` for did:web."""
        self.requests: list[str] = []
        self.held = threading.Event()
        """While set, requests wait (up to 30 s) until ``release`` is called."""
        self._released = threading.Event()
        directory = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                directory.requests.append(self.path)
                if directory.held.is_set():
                    directory._released.wait(30)
                document = directory.documents.get(self.path)
                body = json.dumps(document if document is not None else {"message": "not found"})
                self.send_response(200 if document is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.web_did = f"did:web:127.0.0.1%3A{self.port}"
        """The did:web this server hosts."""
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def publish(self, identity: Identity, document: Any = None) -> None:
        """Serve ``document`` (by default the identity's own) for the identity's DID."""
        web = identity.did.startswith("did:web:")
        path = "/.well-known/did.json" if web else f"/{identity.did}"
        self.documents[path] = identity.document() if document is None else document

    def hold(self) -> None:
        """Hold every answer until ``release``."""
        self._released.clear()
        self.held.set()

    def release(self) -> None:
        """Answer the held requests and stop holding."""
        self.held.clear()
        self._released.set()

    def close(self) -> None:
        """Release anything held and stop serving."""
        self.release()
        self._server.shutdown()
        self._server.server_close()
