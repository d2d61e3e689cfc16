"""checkUserAccess parameters, the request-to-Check mapping, and its settings file."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.atproto.spaces import SpacesConfig, load_config, parse_request, to_check
from policyd.dsl.compiler import compile_policy
from policyd.errors import InvalidRequestError
from policyd.relationship import ObjectRef, SubjectRef

ROOT = Path(__file__).resolve().parents[2]
SPACE = "at://did:plc:ragtjsm2j2vknwkz3zp4oxrd/space/com.example.group/club"
USER = "did:plc:bobx5k4ce2yxvqnm3mhvn4lq"
CLIENT = "https://app.example.com/client-metadata.json"


def test_the_default_mapping() -> None:
    config = SpacesConfig()
    request = parse_request([("space", SPACE), ("user", USER), ("extra", "ignored")], "read")
    check = to_check(request, config)
    assert (check.resource, check.permission, check.subject, check.context) == (
        ObjectRef("space", SPACE),
        "read",
        SubjectRef("account", USER),
        {},
    )
    written = to_check(
        parse_request(
            [("space", SPACE), ("user", USER), ("access", "write"), ("clientId", CLIENT)], "read"
        ),
        config,
    )
    assert (written.permission, written.context) == ("write", {"client_id": CLIENT})


def test_a_configured_mapping() -> None:
    config = SpacesConfig(
        resource_type="group",
        subject_type="user",
        read_permission="view",
        write_permission="post",
        default_access="write",
        client_id_context=None,
    )
    check = to_check(
        parse_request([("space", SPACE), ("user", USER), ("clientId", CLIENT)], "write"), config
    )
    assert (check.resource.type, check.permission, check.subject.type, check.context) == (
        "group",
        "post",
        "user",
        {},
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ([("user", USER)], "space"),
        ([("space", SPACE)], "user"),
        ([("space", ""), ("user", USER)], "space"),
        ([("space", SPACE + "/did:plc:x/com.example.post/1"), ("user", USER)], "space"),
        ([("space", SPACE), ("user", "bob.example.com")], "user"),
        ([("space", SPACE), ("user", USER), ("access", "admin")], "access"),
        ([("space", SPACE), ("user", USER), ("clientId", "")], "clientId"),
        ([("space", SPACE), ("user", USER), ("clientId", "a\nb")], "clientId"),
        ([("space", SPACE), ("user", USER), ("user", "did:plc:mallory")], "user"),
        (
            [
                ("space", f"at://did:plc:{'a' * 600}/space/com.example.group/{'c' * 500}"),
                ("user", USER),
            ],
            "space",
        ),
    ],
    ids=[
        "no-space",
        "no-user",
        "empty-space",
        "record-uri",
        "handle",
        "bad-access",
        "empty-client",
        "control-client",
        "user-twice",
        "too-long-for-an-id",
    ],
)
def test_bad_requests(params: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_check(parse_request(params, "read"), SpacesConfig())
    assert caught.value.field == field


def test_settings_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "spaces.yaml"
    path.write_text("read_permission: view\nclient_id_context: null\ndid_timeout_seconds: 1\n")
    config = load_config(path)
    assert (config.read_permission, config.client_id_context, config.did_timeout_seconds) == (
        "view",
        None,
        1,
    )
    assert load_config(None) == SpacesConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read_permision: view\n", "unknown setting 'read_permision'"),
        ("did_cache_size: many\n", "did_cache_size must be int"),
        ("did_timeout_seconds: true\n", "did_timeout_seconds must be int or float"),
        ("did_timeout_seconds: 0\n", "did_timeout_seconds: must be positive"),
        ("resource_type: Space\n", "resource_type: not a type name"),
        ("default_access: admin\n", "default_access: one of read, write"),
        ("consistency: eventually\n", "consistency: one of minimize_latency, fully_consistent"),
        ("- read\n", "expected a mapping of settings"),
        ("read_permission: [\n", "cannot read"),
    ],
    ids=["typo", "type", "bool", "zero", "type-name", "access", "consistency", "list", "yaml"],
)
def test_bad_settings_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spaces.yaml"
    path.write_text(text)
    with pytest.raises(InvalidRequestError, match=message):
        load_config(path)


def test_the_policy_must_answer_the_mapping() -> None:
    spaces = compile_policy((ROOT / "policies" / "spaces.policy").read_text()).schema
    SpacesConfig().check_policy(spaces)
    social = compile_policy((ROOT / "policies" / "social.policy").read_text()).schema
    with pytest.raises(InvalidRequestError, match=r"no 'space#write' \(write_permission\)"):
        SpacesConfig().check_policy(social)
    with pytest.raises(InvalidRequestError, match=r"no type 'member' \(subject_type\)"):
        SpacesConfig(subject_type="member").check_policy(spaces)
