"""Package spaces maps a checkUserAccess request to a Check, and holds the settings of that mapping.

The request (lexicon ``com.atproto.simplespace.checkUserAccess`` as the spaces
alpha bundles it) names the space (a space URI), the user (a DID) and, when the
user presented a client attestation, the attested ``clientId``; other
implementations also send ``access`` (``read`` or ``write``). By default it
becomes ``space:<space URI>#read@account:<user DID>`` (``#write`` for
``access=write``) with ``{"client_id": <clientId>}`` as caveat context, so a
policy can keep an allow-list of apps (policies/spaces.policy). Every name is a
setting of ``--spaces-config``, a YAML file of ``SpacesConfig`` fields; a wrong
setting, or a mapping the policy in force cannot answer, stops the server at
start with a message that says which.

Parameters policyd does not know are ignored, so that a newer caller's
additions do not break it; a known one given twice is refused, so that
policyd and the PDS cannot read the same request differently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policyd.atproto.syntax import SpaceRef, parse_did, parse_space
from policyd.consistency import Consistency
from policyd.errors import InvalidRelationshipError, InvalidRequestError
from policyd.relationship import RELATION_NAME, TYPE_NAME, ObjectRef, SubjectRef
from policyd.schema.ir import Schema

METHOD = "com.atproto.simplespace.checkUserAccess"
ACCESS_VALUES = ("read", "write")
MAX_CLIENT_ID_LENGTH = 2048
CONSISTENCIES = {
    "minimize_latency": Consistency.minimize_latency(),
    "fully_consistent": Consistency.fully_consistent(),
}


@dataclass(frozen=True, slots=True)
class SpacesConfig:
    """The ``--spaces-config`` settings, with the defaults of issue 13."""

    resource_type: str = "space"
    """The resource is ``<resource_type>:<space URI>``."""
    subject_type: str = "account"
    """The subject is ``<subject_type>:<user DID>``."""
    read_permission: str = "read"
    write_permission: str = "write"
    default_access: str = "read"
    """The access asked when the request names none (the alpha PDS never does)."""
    client_id_context: str | None = "client_id"
    """The caveat context key of the attested clientId; null passes no context."""
    consistency: str = "minimize_latency"
    """minimize_latency (revision at most 0.1 s old, own writes seen) or fully_consistent."""
    clock_skew_seconds: float = 10.0
    max_token_lifetime_seconds: float = 300.0
    replay_cache_size: int = 1_000_000
    did_timeout_seconds: float = 3.0
    did_cache_size: int = 10_000
    did_cache_ttl_seconds: float = 3600.0
    did_refresh_after_seconds: float = 5.0

    def validate(self) -> None:
        """Raise InvalidRequestError naming the setting that is wrong."""
        for name in ("resource_type", "subject_type"):
            if not TYPE_NAME.match(getattr(self, name)):
                raise InvalidRequestError(f"{name}: not a type name", field=name)
        for name in ("read_permission", "write_permission"):
            if not RELATION_NAME.match(getattr(self, name)):
                raise InvalidRequestError(f"{name}: not a permission name", field=name)
        if self.client_id_context is not None and not RELATION_NAME.match(self.client_id_context):
            raise InvalidRequestError(
                "client_id_context: not a caveat parameter name", field="client_id_context"
            )
        if self.default_access not in ACCESS_VALUES:
            raise InvalidRequestError(
                f"default_access: one of {', '.join(ACCESS_VALUES)}", field="default_access"
            )
        if self.consistency not in CONSISTENCIES:
            raise InvalidRequestError(
                f"consistency: one of {', '.join(CONSISTENCIES)}", field="consistency"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and value <= 0:
                raise InvalidRequestError(f"{field.name}: must be positive", field=field.name)

    def permission(self, access: str) -> str:
        """The permission checked for an access."""
        return self.read_permission if access == "read" else self.write_permission

    def check_policy(self, schema: Schema) -> None:
        """Raise InvalidRequestError unless the policy can answer every mapped check."""
        for type_name, setting in (
            (self.resource_type, "resource_type"),
            (self.subject_type, "subject_type"),
        ):
            if schema.definition(type_name) is None:
                raise InvalidRequestError(
                    f"the policy in force has no type '{type_name}' ({setting}); "
                    "serve a policy that defines it (see policies/spaces.policy)",
                    field=setting,
                )
        definition = schema.definition(self.resource_type)
        assert definition is not None
        for access in ACCESS_VALUES:
            permission = self.permission(access)
            if definition.member(permission) is None:
                raise InvalidRequestError(
                    f"the policy in force has no '{self.resource_type}#{permission}' "
                    f"({access}_permission)",
                    field=f"{access}_permission",
                )


def load_config(path: str | Path | None) -> SpacesConfig:
    """The settings in a YAML file (defaults for what it leaves out); the defaults without one."""
    if path is None:
        config = SpacesConfig()
        config.validate()
        return config
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InvalidRequestError(f"{path}: cannot read: {e}", field="spaces_config") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{path}: expected a mapping of settings", field="spaces_config")
    defaults = SpacesConfig()
    known = {f.name for f in dataclasses.fields(SpacesConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise InvalidRequestError(
                f"{path}: unknown setting {key!r}; known: {', '.join(sorted(known))}",
                field=str(key),
            )
        default = getattr(defaults, key)
        expected: tuple[type, ...] = (
            (int, float) if isinstance(default, float) else (type(default),)
        )
        if key == "client_id_context":
            expected = (str, type(None))
        if isinstance(value, bool) or not isinstance(value, expected):
            raise InvalidRequestError(
                f"{path}: {key} must be {' or '.join(t.__name__ for t in expected)}, got {value!r}",
                field=key,
            )
        values[key] = value
    config = dataclasses.replace(defaults, **values)
    try:
        config.validate()
    except InvalidRequestError as e:
        raise InvalidRequestError(f"{path}: {e.message}", field=e.field) from e
    return config


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A checkUserAccess request, parsed."""

    space: SpaceRef
    user: str
    access: str
    client_id: str | None


def parse_request(params: Iterable[tuple[str, str]], default_access: str) -> AccessRequest:
    """Parse the query parameters; InvalidRequestError (HTTP 400) naming the parameter at fault."""
    known: dict[str, str] = {}
    for name, value in params:
        if name in ("space", "user", "access", "clientId"):
            if name in known:
                raise InvalidRequestError(f"{name} is given more than once", field=name)
            known[name] = value
    for name in ("space", "user"):
        if not known.get(name):
            raise InvalidRequestError(f"{name} is required", field=name)
    access = known.get("access", default_access)
    if access not in ACCESS_VALUES:
        raise InvalidRequestError(
            f"access must be {' or '.join(ACCESS_VALUES)}, got {access[:50]!r}", field="access"
        )
    client_id = known.get("clientId")
    if client_id is not None and (
        not client_id or len(client_id) > MAX_CLIENT_ID_LENGTH or not client_id.isprintable()
    ):
        raise InvalidRequestError("clientId is not a client id", field="clientId")
    return AccessRequest(
        parse_space(known["space"]), parse_did(known["user"], "user"), access, client_id
    )


@dataclass(frozen=True, slots=True)
class SpaceCheck:
    """The Check that answers a request."""

    resource: ObjectRef
    permission: str
    subject: SubjectRef
    context: Mapping[str, Any]


def to_check(request: AccessRequest, config: SpacesConfig) -> SpaceCheck:
    """The Check for a request; InvalidRequestError if an id cannot be a policyd id."""
    resource = ObjectRef(config.resource_type, request.space.uri)
    subject = SubjectRef(config.subject_type, request.user)
    for value, name in ((resource, "space"), (subject.object, "user")):
        try:
            value.validate(name)
        except InvalidRelationshipError as e:
            raise InvalidRequestError(f"{name} is too long or not a policyd id", field=name) from e
    context: dict[str, Any] = {}
    if request.client_id is not None and config.client_id_context is not None:
        context[config.client_id_context] = request.client_id
    return SpaceCheck(resource, config.permission(request.access), subject, context)
