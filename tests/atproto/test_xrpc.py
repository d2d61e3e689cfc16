"""checkUserAccess over HTTP on loopback: answers from the policy, refusals that answer nothing.

The engine holds ``policies/spaces.test.yaml``; the space authority (alice) and a
did:web authority with a P-256 key get fresh keys whose DID documents a loopback
PLC stand-in and did:web host serve; tokens are real service-auth JWTs.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from policyd.atproto import METHOD, SpacesConfig, XrpcServer, XrpcSettings
from policyd.atproto.keys import ES256, Keypair
from policyd.atproto.testing import DirectoryServer, Identity, random_plc_did
from policyd.engine import Engine
from policyd.errors import InvalidRequestError
from policyd.relationship import Operation, RelationshipUpdate, parse_relationship
from policyd.store.memory import MemoryStore
from policyd.validationfile import load_engine, load_validation_files

ROOT = Path(__file__).resolve().parents[2]
APP = "did:plc:65zuidf2qgvu3noukzn2obpi#policyd"
ALICE = "did:plc:ragtjsm2j2vknwkz3zp4oxrd"
CLUB = f"at://{ALICE}/space/com.example.group/club"
FANS = f"at://{ALICE}/space/com.example.fanclub/3kgfans7t2dk"
STUDIO = f"at://{ALICE}/space/com.example.group/studio"
BOB = "did:plc:bobx5k4ce2yxvqnm3mhvn4lq"
CAROL = "did:plc:c4rolqhj2w6gxbekbfdvn7yu"
DAVE = "did:plc:dav3pu7tgklzyh4sy2mzxq5e"
ERIN = "did:plc:erinw3bx7zo2kq5vhyfmc6ld"
MALLORY = "did:plc:mallorypz3q6bx4wvk2tefhy"
FRANK = "did:web:frank.example.com"
JUDY = "did:plc:judyq3vn5xkw2ltmp7rbc4sy"
LISTED_APP = "https://app.example.com/client-metadata.json"
OTHER_APP = "https://other.example.net/client-metadata.json"


@dataclass
class World:
    """A running checkUserAccess server and the identities that can call it."""

    server: XrpcServer
    registry: CollectorRegistry
    engine: Engine
    directory: DirectoryServer
    alice: Identity
    web: Identity

    @property
    def url(self) -> str:
        return f"http://{self.server.address}/xrpc/{METHOD}"

    def ask(
        self,
        params: dict[str, str] | list[tuple[str, str]],
        authorization: str | None,
        method: str = "GET",
        path: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        query = urllib.parse.urlencode(params)
        url = f"http://{self.server.address}{path}" if path else f"{self.url}?{query}"
        headers = {"Authorization": authorization} if authorization is not None else {}
        request = urllib.request.Request(url, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                assert response.headers["content-type"].startswith("application/json")
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def token(self, identity: Identity | None = None, **overrides: Any) -> str:
        return f"Bearer {(identity or self.alice).token(APP, METHOD, **overrides)}"

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


Serve = Callable[..., World]


@pytest.fixture
def serve(directory: DirectoryServer) -> Iterator[Serve]:
    started: list[XrpcServer] = []

    def start(**settings: Any) -> World:
        (loaded,) = load_validation_files(ROOT / "policies" / "spaces.test.yaml")
        engine = load_engine(loaded)
        alice = Identity(ALICE)
        web = Identity(directory.web_did, Keypair(ES256))
        directory.publish(alice)
        directory.publish(web)
        web_space = f"at://{web.did}/space/com.example.group/web"
        engine.write(
            [
                RelationshipUpdate(
                    Operation.TOUCH, parse_relationship(f"space:{web_space}#member@account:{BOB}")
                )
            ]
        )
        registry = CollectorRegistry()
        server = XrpcServer(
            engine,
            XrpcSettings(
                "127.0.0.1:0",
                APP,
                replace(SpacesConfig(), **settings),
                directory.url,
                allow_loopback_http=True,
            ),
            registry,
            grace=2,
        )
        server.start()
        started.append(server)
        return World(server, registry, engine, directory, alice, web)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def world(serve: Serve) -> World:
    return serve()


@dataclass(frozen=True)
class Decision:
    id: str
    space: str
    user: str
    authorized: bool
    access: str | None = None
    client: str | None = None


DECISIONS = [
    Decision("member", CLUB, BOB, True),
    Decision("moderator", CLUB, CAROL, True),
    Decision("non-member", CLUB, ERIN, False),
    Decision("banned", CLUB, MALLORY, False),
    Decision("follower", FANS, DAVE, True),
    Decision("blocked-follower", FANS, MALLORY, False),
    Decision("subscriber", FANS, JUDY, True),
    Decision("expired-subscription", FANS, FRANK, False),
    Decision("member-writes", CLUB, BOB, True, access="write"),
    Decision("follower-reads-only", FANS, DAVE, False, access="write"),
    Decision("explicit-read", FANS, DAVE, True, access="read"),
    Decision("allowed-client", STUDIO, BOB, True, client=LISTED_APP),
    Decision("refused-client", STUDIO, BOB, False, client=OTHER_APP),
    Decision("no-attested-client", STUDIO, BOB, False),
    Decision("client-without-allow-list", CLUB, BOB, True, client=OTHER_APP),
]


@pytest.mark.parametrize("case", DECISIONS, ids=lambda c: c.id)
def test_decisions(world: World, case: Decision, caplog: pytest.LogCaptureFixture) -> None:
    params = {"space": case.space, "user": case.user}
    if case.access is not None:
        params["access"] = case.access
    if case.client is not None:
        params["clientId"] = case.client
    with caplog.at_level(logging.INFO, logger="policyd.atproto.audit"):
        assert world.ask(params, world.token()) == (200, {"authorized": case.authorized})
    (line,) = [r.getMessage() for r in caplog.records if r.name == "policyd.atproto.audit"]
    audit = json.loads(line)
    permission = case.access or "read"
    assert audit["space"] == case.space
    assert audit["user"] == case.user
    assert audit["clientId"] == case.client
    assert audit["permission"] == permission
    assert audit["answer"] == ("authorized" if case.authorized else "denied")
    assert audit["iss"] == ALICE
    assert audit["revision"] == world.engine.tokens.revision(audit["token"])
    if case.id == "no-attested-client":
        assert (audit["result"], audit["missing"]) == ("conditional", ["client_id"])
    answer = "authorized" if case.authorized else "denied"
    assert world.metric("policyd_xrpc_answers_total", permission=permission, answer=answer) == 1


def test_a_did_web_authority_with_a_p256_key(world: World) -> None:
    space = f"at://{world.web.did}/space/com.example.group/web"
    assert world.ask({"space": space, "user": BOB}, world.token(world.web)) == (
        200,
        {"authorized": True},
    )


@dataclass(frozen=True)
class Unauthorized:
    id: str
    reason: str
    error: str
    token: Callable[[World], str | None]
    space: str = CLUB


def _impostor(world: World) -> str:
    return world.token(Identity(random_plc_did()), claims={"iss": ALICE})


def _another_authority(world: World) -> str:
    other = Identity(random_plc_did())
    world.directory.publish(other)
    return world.token(other)


def _unknown_authority(world: World) -> str:
    return world.token(Identity("did:plc:unknownq3vn5xkw2ltmp7rbc"))


def _keyless_authority(world: World) -> str:
    keyless = Identity("did:plc:keylessvn5xkw2ltmp7rbc4s")
    world.directory.publish(keyless, {**keyless.document(), "verificationMethod": []})
    return world.token(keyless)


UNAUTHORIZED = [
    Unauthorized("no-token", "missing-token", "AuthenticationRequired", lambda w: None),
    Unauthorized("bad-signature", "bad-signature", "BadJwtSignature", _impostor),
    Unauthorized(
        "wrong-aud",
        "wrong-audience",
        "BadJwtAudience",
        lambda w: w.token(claims={"aud": "did:plc:65zuidf2qgvu3noukzn2obpi#other"}),
    ),
    Unauthorized(
        "wrong-lxm",
        "wrong-method",
        "BadJwtLexiconMethod",
        lambda w: w.token(claims={"lxm": "com.atproto.space.notifyWrite"}),
    ),
    Unauthorized("expired", "expired", "JwtExpired", lambda w: w.token(lifetime=-1)),
    Unauthorized("iss-not-authority", "issuer-not-authority", "BadJwtIss", _another_authority),
    Unauthorized(
        "unknown-did",
        "did-not-found",
        "BadJwtIss",
        _unknown_authority,
        space="at://did:plc:unknownq3vn5xkw2ltmp7rbc/space/com.example.group/club",
    ),
    Unauthorized(
        "no-usable-key",
        "no-signing-key",
        "BadJwtSignature",
        _keyless_authority,
        space="at://did:plc:keylessvn5xkw2ltmp7rbc4s/space/com.example.group/club",
    ),
]


@pytest.mark.parametrize("case", UNAUTHORIZED, ids=lambda c: c.id)
def test_refusals_are_401_and_answer_nothing(
    world: World, case: Unauthorized, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="policyd.atproto"):
        status, body = world.ask({"space": case.space, "user": BOB}, case.token(world))
    assert (status, body["error"]) == (401, case.error)
    assert "authorized" not in body
    assert world.metric("policyd_xrpc_refusals_total", reason=case.reason, status="401") == 1
    assert world.metric("policyd_xrpc_answers_total", permission="read", answer="authorized") == 0
    (line,) = [r for r in caplog.records if r.name == "policyd.atproto"]
    assert line.levelno == logging.WARNING
    logged = json.loads(line.getMessage().split(" ", 1)[1])
    assert (logged["refused"], logged["space"], logged["user"]) == (case.reason, case.space, BOB)


def test_a_resolver_timeout_is_401(serve: Serve) -> None:
    world = serve(did_timeout_seconds=0.2)
    world.directory.hold()
    status, body = world.ask({"space": CLUB, "user": BOB}, world.token())
    world.directory.release()
    assert (status, body["error"]) == (401, "BadJwtIss")
    assert world.metric("policyd_xrpc_refusals_total", reason="did-timeout", status="401") == 1
    assert world.metric("policyd_did_fetches_total", method="plc", result="timeout") == 1


def test_a_replayed_token_is_401(world: World) -> None:
    token = world.token()
    assert world.ask({"space": CLUB, "user": BOB}, token) == (200, {"authorized": True})
    status, body = world.ask({"space": CLUB, "user": ERIN}, token)
    assert (status, body["error"]) == (401, "BadJwt")
    assert world.metric("policyd_xrpc_refusals_total", reason="replayed", status="401") == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user": BOB}, "space"),
        ({"space": CLUB}, "user"),
        ({"space": "at://alice.test/space/com.example.group/club", "user": BOB}, "space"),
        ({"space": CLUB, "user": "@bob"}, "user"),
        ({"space": CLUB, "user": BOB, "access": "delete"}, "access"),
        ([("space", CLUB), ("user", BOB), ("user", ERIN)], "user"),
    ],
    ids=["no-space", "no-user", "handle-authority", "bad-user", "bad-access", "user-twice"],
)
def test_bad_requests_are_400(
    world: World, params: dict[str, str] | list[tuple[str, str]], field: str
) -> None:
    status, body = world.ask(params, world.token())
    assert (status, body["error"]) == (400, "InvalidRequest")
    assert field in body["message"]
    assert world.metric("policyd_xrpc_refusals_total", reason="invalid-request", status="400") == 1


def test_other_methods_and_paths(world: World) -> None:
    assert world.ask({}, None, method="POST")[0] == 405
    assert world.ask({}, None, path="/xrpc/com.atproto.space.getSpace")[1]["error"] == (
        "MethodNotImplemented"
    )
    assert world.ask({}, None, path="/")[0] == 404


def test_a_bug_is_a_logged_500_that_says_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(world.engine, "check", broken)
    status, body = world.ask({"space": CLUB, "user": BOB}, world.token())
    assert (status, body) == (500, {"error": "InternalServerError", "message": "internal error"})
    assert "secret detail" in caplog.text
    assert world.metric("policyd_xrpc_refusals_total", reason="internal", status="500") == 1


def test_a_policy_that_no_longer_answers_is_500(world: World) -> None:
    policy = (ROOT / "policies" / "spaces.policy").read_text()
    world.engine.write_policy(policy.replace("permission read =", "permission view ="))
    status, body = world.ask({"space": CLUB, "user": BOB}, world.token())
    assert (status, body["error"]) == (500, "InternalServerError")
    assert world.metric("policyd_xrpc_refusals_total", reason="policy-mismatch", status="500") == 1


def test_a_server_needs_a_policy_that_answers_the_mapping(directory: DirectoryServer) -> None:
    settings = XrpcSettings("127.0.0.1:0", APP, SpacesConfig(), directory.url, True)
    with pytest.raises(InvalidRequestError, match="needs a policy in force"):
        XrpcServer(Engine(MemoryStore()), settings)
    engine = Engine(MemoryStore())
    engine.write_policy((ROOT / "policies" / "social.policy").read_text())
    with pytest.raises(InvalidRequestError, match="no 'space#write'"):
        XrpcServer(engine, settings)
    with pytest.raises(InvalidRequestError, match="did:…#fragment"):
        XrpcServer(engine, replace(settings, service_did="did:plc:65zuidf2qgvu3noukzn2obpi"))


def test_a_taken_port_is_refused_at_start(world: World) -> None:
    taken = XrpcSettings(world.server.address, APP, SpacesConfig(), world.directory.url, True)
    with pytest.raises(InvalidRequestError, match="cannot serve XRPC on"):
        XrpcServer(world.engine, taken).start()


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert), str(key_file)


def test_xrpc_over_tls(world: World, tmp_path: Path) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    settings = replace(world.server.settings, tls_cert=cert, tls_key=key)
    server = XrpcServer(world.engine, settings)
    server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        query = urllib.parse.urlencode({"space": CLUB, "user": BOB})
        request = urllib.request.Request(
            f"{server.url}/xrpc/{METHOD}?{query}", headers={"Authorization": world.token()}
        )
        trusting = ssl.create_default_context(cafile=cert)
        with urllib.request.urlopen(request, timeout=15, context=trusting) as response:
            assert json.load(response) == {"authorized": True}
    finally:
        server.stop()
    with pytest.raises(InvalidRequestError, match="both a certificate and a key"):
        XrpcServer(world.engine, replace(settings, tls_key=None))
