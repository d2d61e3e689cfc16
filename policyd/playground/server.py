"""Package server is the playground's HTTP side: the page, its assets, and a small JSON API.

It binds loopback by default and serves only what ships in ``static/``.
Because a page on any other site can send requests to a loopback port, the
API answers only JSON requests whose Host (and Origin, when the browser sends
one) is this server's own address: a cross-site form cannot post JSON without
a preflight this server never grants, and a DNS-rebound name fails the Host
check. Work runs in a thread, one request at a time, so the event loop keeps
serving the page while a check runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from policyd.errors import PolicydError, PolicyErrors
from policyd.playground.backends import ServerBackend
from policyd.playground.scenario import Scenario, render_scenario
from policyd.playground.workbench import Workbench
from policyd.playground.workspace import Workspace

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def static_dir() -> Path:
    """The folder of the page and its vendored assets inside the installed package."""
    return Path(str(resources.files("policyd.playground").joinpath("static")))


def scenario_from(data: Any) -> Scenario:
    """A scenario from the page's JSON (unknown fields refused).

    Raises:
        web.HTTPBadRequest: the JSON is not a scenario.
    """
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a scenario object")
    fields = {f.name for f in dataclasses.fields(Scenario)}
    if not set(data) <= fields:
        raise web.HTTPBadRequest(text=f"unknown scenario fields: {sorted(set(data) - fields)}")
    try:
        scenario = Scenario(**data)
    except TypeError as e:
        raise web.HTTPBadRequest(text=str(e)) from e
    if not isinstance(scenario.leads, dict):
        raise web.HTTPBadRequest(text="a scenario's leads must be an object")
    texts = (
        scenario.policy,
        scenario.relationships,
        scenario.assertions,
        scenario.validation,
        scenario.header,
        scenario.trailer,
        *scenario.leads.values(),
    )
    if not all(isinstance(v, str) for v in texts) or not isinstance(
        scenario.schema_file, str | None
    ):
        raise web.HTTPBadRequest(text="a scenario's panes and layout must be strings")
    return scenario


def _error_body(error: PolicydError) -> dict[str, Any]:
    if isinstance(error, PolicyErrors):
        return {"error": error.code, "message": "\n".join(str(d) for d in error.diagnostics)}
    return {"error": error.code, "message": str(error)}


class Playground:
    """The playground's web application over a workbench and a workspace folder."""

    def __init__(
        self,
        workbench: Workbench,
        workspace: Workspace,
        *,
        initial_file: str | None = None,
        server_address: str | None = None,
    ) -> None:
        self.workbench = workbench
        self.workspace = workspace
        self.initial_file = initial_file
        self.server_address = server_address
        self.allowed_hosts: set[str] = set()
        self._lock = threading.Lock()

    def allow(self, port: int, host: str) -> None:
        """Accept API requests addressed to ``host:port`` and loopback names at ``port``."""
        named = f"[{host}]" if ":" in host else host
        self.allowed_hosts = {f"{h}:{port}" for h in (*LOOPBACK_NAMES, named)}

    def app(self) -> web.Application:
        """The aiohttp application: the page, /static/ and /api/."""
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_REQUEST_BYTES)
        index = static_dir() / "index.html"

        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(index, headers={"Cache-Control": "no-store"})

        app.router.add_get("/", page)
        app.router.add_static("/static/", static_dir())
        app.router.add_get("/api/state", self._json(self.state))
        for name, method in (
            ("open", self.open),
            ("parse", self.parse),
            ("report", self.report),
            ("check", self.check),
            ("around", self.around),
            ("save", self.save),
            ("render", self.render),
        ):
            app.router.add_post(f"/api/{name}", self._json(method))
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            if request.host not in self.allowed_hosts:
                raise web.HTTPForbidden(text="the playground answers only its own address")
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] not in self.allowed_hosts:
                raise web.HTTPForbidden(text="the playground answers only its own page")
            if request.method == "POST" and request.content_type != "application/json":
                raise web.HTTPUnsupportedMediaType(text="send JSON")
        return await handler(request)

    def _json(self, method: Callable[[Any], Any]) -> Handler:
        """A handler that runs ``method`` on the request's JSON in a thread and answers JSON.

        A policyd error is the caller's: it answers 400 with its code and message.
        """

        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.json() if request.method == "POST" else {}

            def run() -> Any:
                with self._lock:
                    return method(body)

            try:
                result = await asyncio.to_thread(run)
            except PolicydError as e:
                return web.json_response(_error_body(e), status=400)
            return web.json_response(result)

        return handler

    def state(self, body: Any) -> dict[str, Any]:
        """What the page needs to start: the mode, the files, and a server's policy if any."""
        state: dict[str, Any] = {
            "mode": "server" if self.server_address else "memory",
            "server": self.server_address,
            "root": str(self.workspace.root),
            "files": self.workspace.files(),
            "initial": self.initial_file,
        }
        backend = self.workbench.backend
        if isinstance(backend, ServerBackend):
            state["scenario"] = dataclasses.asdict(
                Scenario(policy=backend.policy(), relationships=backend.sample())
            )
        return state

    def open(self, body: Any) -> dict[str, Any]:
        """The scenarios of a file of the workspace."""
        documents = self.workspace.open(str(body.get("path", "")))
        return {"documents": [dataclasses.asdict(d) for d in documents]}

    def parse(self, body: Any) -> dict[str, Any]:
        """The scenarios of an uploaded file's text."""
        documents = self.workspace.parse(str(body.get("text", "")), str(body.get("name", "")))
        return {"documents": [dataclasses.asdict(d) for d in documents]}

    def report(self, body: Any) -> dict[str, Any]:
        """Diagnostics and outcomes for the panes."""
        return dataclasses.asdict(self.workbench.report(scenario_from(body.get("scenario"))))

    def check(self, body: Any) -> dict[str, Any]:
        """The check box's answer and its explanation graph."""
        scenario = scenario_from(body.get("scenario"))
        answer = self.workbench.check(
            scenario, str(body.get("query", "")), str(body.get("context", ""))
        )
        return dataclasses.asdict(answer)

    def around(self, body: Any) -> dict[str, Any]:
        """The relationship graph around an object."""
        scenario = scenario_from(body.get("scenario"))
        depth = min(max(int(body.get("depth", 2)), 1), 4)
        return dataclasses.asdict(
            self.workbench.around(scenario, str(body.get("object", "")), depth)
        )

    def save(self, body: Any) -> dict[str, Any]:
        """Write a scenario into a file of the workspace and validate the file."""
        scenario = scenario_from(body.get("scenario"))
        saved = self.workspace.save(str(body.get("path", "")), int(body.get("index", 0)), scenario)
        return dataclasses.asdict(saved) | {"files": self.workspace.files()}

    def render(self, body: Any) -> dict[str, Any]:
        """The scenario as a validation file that stands alone (policy inline), for download."""
        scenario = scenario_from(body.get("scenario"))
        return {"text": render_scenario(scenario, inline_policy=True).text}


async def _serve(
    playground: Playground, host: str, port: int, ready: Callable[[str], None]
) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family)
    bound = int(listener.getsockname()[1])
    playground.allow(bound, host)
    runner = web.AppRunner(playground.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    named = f"[{host}]" if ":" in host else host
    ready(f"http://{named}:{bound}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def serve(playground: Playground, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve until interrupted; ``ready`` gets the page's URL once the port is bound."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(playground, host, port, ready))
