"""Package did resolves the DIDs of service-auth issuers to the keys that verify their tokens.

``did:plc`` resolves through a PLC directory (its HTTP API: ``GET {plc}/{did}``
answers the document, 404 or 410 when there is none), ``did:web`` over HTTPS at
``/.well-known/did.json`` of the host; atproto allows hostname did:web only,
no paths and no ports (atproto.com/specs/did). Plain HTTP, and with it a port,
is allowed for loopback hosts only, and only with ``allow_loopback_http`` (the
``--insecure-loopback-http`` test flag), which also lets the PLC directory be
an ``http://`` loopback URL.

The issuer of a service-auth token is chosen by whoever sends the request, so
resolution is hardened against being used as a probe: a did:web host must be a
public hostname (no IP literals) and every address it resolves to must be
global, checked in the connector's resolver so that the address checked is the
address connected to; redirects are not followed; a document is read up to
``max_document_bytes``; every fetch has a timeout and at most
``max_concurrent_fetches`` run at once. The atproto reference verifier
(``verifyJwt`` in @atproto/xrpc-server, as the spaces alpha bundles it) asks
its resolver again, bypassing the cache, when a signature does not verify, so
that a rotated key is picked up; ``resolve(did, refresh=True)`` does that here,
but returns the cached document when it is younger than ``refresh_after``, so
forged tokens cannot make policyd fetch a document again and again.

Documents are cached (bounded LRU, ``cache_ttl``); concurrent misses for one
DID share one fetch; a DID the directory does not know is remembered for
``not_found_ttl``. Everything here runs on the XRPC server's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from policyd.atproto.keys import VerifyingKey, parse_verification_method
from policyd.errors import DidResolutionError, InvalidRequestError

DEFAULT_PLC_URL = "https://plc.directory"
KEY_FRAGMENTS = ("atproto_space", "atproto")
"""Where a space authority's signing key is, first match wins: the space key of proposal
0016 ("Space authority"), else the account's atproto key. Other methods are not parsed."""
_HOSTNAME = re.compile(
    r"\A(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z"
)
_LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """Where and how DIDs are resolved."""

    plc_url: str = DEFAULT_PLC_URL
    timeout: float = 3.0
    """Seconds one fetch may take, connecting and reading included."""
    cache_size: int = 10_000
    cache_ttl: float = 3600.0
    """Seconds a fetched document is used without asking again."""
    refresh_after: float = 5.0
    """A signature failure fetches the document again only if it is older than this."""
    not_found_ttl: float = 10.0
    max_document_bytes: int = 64 * 1024
    max_concurrent_fetches: int = 32
    allow_loopback_http: bool = False

    def validate(self) -> None:
        """Raise InvalidRequestError naming the setting that cannot work."""
        plc = urlsplit(self.plc_url)
        loopback = plc.hostname is not None and _is_loopback(plc.hostname)
        if plc.scheme != "https" and not (
            plc.scheme == "http" and loopback and self.allow_loopback_http
        ):
            raise InvalidRequestError(
                f"the PLC directory URL must be https:// (http:// only for a loopback host "
                f"with --insecure-loopback-http), got {self.plc_url!r}",
                field="plc_url",
            )
        if not plc.hostname or plc.query or plc.fragment:
            raise InvalidRequestError(
                f"the PLC directory URL must be a plain base URL, got {self.plc_url!r}",
                field="plc_url",
            )
        for name in ("timeout", "cache_ttl", "max_document_bytes", "max_concurrent_fetches"):
            if getattr(self, name) <= 0:
                raise InvalidRequestError(f"{name} must be positive", field=name)
        if self.cache_size < 1 or self.refresh_after < 0 or self.not_found_ttl < 0:
            raise InvalidRequestError(
                "cache_size must be positive, refresh_after and not_found_ttl not negative",
                field="did",
            )


@dataclass(frozen=True, slots=True)
class DidDocument:
    """What policyd keeps of a DID document: its atproto verification keys by fragment.

    A fragment maps to None when the document names it with a key policyd
    cannot use (an unknown type, a malformed key), so that a broken
    ``#atproto_space`` is not silently skipped for ``#atproto``.
    """

    did: str
    keys: Mapping[str, VerifyingKey | None]

    def signing_key(self) -> VerifyingKey | None:
        """``#atproto_space`` if the document names it, else ``#atproto``; None if unusable."""
        for fragment in KEY_FRAGMENTS:
            if fragment in self.keys:
                return self.keys[fragment]
        return None


def parse_document(did: str, document: object) -> DidDocument:
    """Keep the atproto verification keys (``KEY_FRAGMENTS``) of the document of ``did``."""
    if not isinstance(document, dict):
        raise DidResolutionError("bad-document", f"the DID document of {did} is not an object")
    if document.get("id") != did:
        raise DidResolutionError(
            "bad-document", f"the DID document fetched for {did} is the document of another DID"
        )
    methods = document.get("verificationMethod", [])
    if not isinstance(methods, list):
        raise DidResolutionError("bad-document", f"{did}: verificationMethod is not a list")
    keys: dict[str, VerifyingKey | None] = {}
    for method in methods:
        if not isinstance(method, dict) or not isinstance(method.get("id"), str):
            continue
        owner, _, fragment = str(method["id"]).partition("#")
        if fragment not in KEY_FRAGMENTS or owner not in ("", did) or fragment in keys:
            continue
        try:
            keys[fragment] = parse_verification_method(method)
        except DidResolutionError:
            keys[fragment] = None
    return DidDocument(did, keys)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def did_web_url(did: str, allow_loopback_http: bool) -> str:
    """The URL of a did:web document: ``https://{host}/.well-known/did.json``.

    Raises:
        DidResolutionError: ``unsupported`` for paths, ports, IP literals and
            loopback hosts (the latter allowed over HTTP with ``allow_loopback_http``).
    """
    rest = did.removeprefix("did:web:")
    if ":" in rest:
        raise DidResolutionError("unsupported", f"{did}: atproto allows no did:web paths")
    host, _, port = unquote(rest).lower().partition(":")  # did:web spells a port %3A
    if _is_loopback(host):
        if not allow_loopback_http or (port and not port.isdigit()):
            raise DidResolutionError(
                "unsupported", f"{did}: a loopback did:web needs --insecure-loopback-http"
            )
        return f"http://{host}{':' + port if port else ''}/.well-known/did.json"
    if port or _HOSTNAME.match(host) is None:
        raise DidResolutionError(
            "unsupported", f"{did}: a did:web must name a public hostname without a port"
        )
    return f"https://{host}/.well-known/did.json"


class _PublicAddressResolver(AbstractResolver):
    """Resolves like the system, but refuses non-global addresses for the hosts it guards."""

    def __init__(self, open_hosts: frozenset[str]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._open_hosts = open_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if host in self._open_hosts:
            return found
        public = [r for r in found if ipaddress.ip_address(r["host"]).is_global]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


_Entry = tuple[float, DidDocument | DidResolutionError]


class DidResolver:
    """Resolves DIDs to documents, with a cache; use it from one event loop only."""

    def __init__(
        self,
        config: ResolverConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[str, str], None] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self._clock = clock
        self._on_fetch = on_fetch
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[DidDocument]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._fetch_slots: asyncio.Semaphore | None = None
        self._plc = config.plc_url.rstrip("/")

    def __len__(self) -> int:
        return len(self._cache)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            plc_host = urlsplit(self.config.plc_url).hostname or ""
            open_hosts = {plc_host}
            if self.config.allow_loopback_http:
                open_hosts.update(_LOOPBACK_NAMES)
            connector = aiohttp.TCPConnector(
                resolver=_PublicAddressResolver(frozenset(open_hosts)), limit=0
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                headers={"accept": "application/did+ld+json, application/json"},
            )
            self._fetch_slots = asyncio.Semaphore(self.config.max_concurrent_fetches)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def resolve(self, did: str, *, refresh: bool = False) -> DidDocument:
        """The document of ``did``, from the cache when it is fresh enough.

        With ``refresh`` (after a signature failure) a cached document older than
        ``refresh_after`` is fetched again.

        Raises:
            DidResolutionError: the DID is unsupported, unknown, unreachable or its
                document is malformed; ``reason`` says which.
        """
        now = self._clock()
        cached = self._cache.get(did)
        if cached is not None:
            fetched_at, value = cached
            age = now - fetched_at
            fresh = age < (
                self.config.not_found_ttl
                if isinstance(value, DidResolutionError)
                else self.config.cache_ttl
            )
            if fresh and not (refresh and age >= self.config.refresh_after):
                self._cache.move_to_end(did)
                if isinstance(value, DidResolutionError):
                    raise value
                return value
        pending = self._inflight.get(did)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_and_cache(did))
            self._inflight[did] = pending
            pending.add_done_callback(lambda done: self._forget(did, done))
        return await asyncio.shield(pending)

    def _forget(self, did: str, done: asyncio.Future[DidDocument]) -> None:
        """Drop a finished fetch; its error is read here too, in case every asker went away."""
        self._inflight.pop(did, None)
        if not done.cancelled():
            done.exception()

    async def _fetch_and_cache(self, did: str) -> DidDocument:
        try:
            document = await self._fetch(did)
        except DidResolutionError as e:
            if self._on_fetch is not None:
                self._on_fetch(did.split(":")[1], e.reason)
            if e.reason == "not-found":
                self._store(did, e)
            raise
        if self._on_fetch is not None:
            self._on_fetch(did.split(":")[1], "ok")
        self._store(did, document)
        return document

    def _store(self, did: str, value: DidDocument | DidResolutionError) -> None:
        self._cache[did] = (self._clock(), value)
        self._cache.move_to_end(did)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    def url_of(self, did: str) -> str:
        """Where the document of ``did`` is fetched from."""
        if did.startswith("did:plc:"):
            return f"{self._plc}/{did}"
        if did.startswith("did:web:"):
            return did_web_url(did, self.config.allow_loopback_http)
        raise DidResolutionError("unsupported", f"{did}: only did:plc and did:web resolve")

    async def _fetch(self, did: str) -> DidDocument:
        url = self.url_of(did)
        session = self._open()
        assert self._fetch_slots is not None
        limit = self.config.max_document_bytes
        try:
            # The timeout covers waiting for a fetch slot too, so a flood cannot queue forever.
            async with (
                asyncio.timeout(self.config.timeout),
                self._fetch_slots,
                session.get(url, allow_redirects=False) as response,
            ):
                if response.status in (404, 410):
                    raise DidResolutionError("not-found", f"{did} is not known at {url}")
                if response.status != 200:
                    raise DidResolutionError(
                        "bad-status", f"{url} answered HTTP {response.status} for {did}"
                    )
                body = bytearray()
                async for chunk in response.content.iter_chunked(16 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise DidResolutionError(
                            "bad-document", f"the DID document of {did} is over {limit} bytes"
                        )
        except TimeoutError as e:
            raise DidResolutionError(
                "timeout", f"no DID document for {did} within {self.config.timeout}s"
            ) from e
        except aiohttp.ClientError as e:
            raise DidResolutionError("unreachable", f"cannot fetch {url}: {e}") from e
        try:
            document: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise DidResolutionError("bad-document", f"{did}: the DID document is not JSON") from e
        return parse_document(did, document)
