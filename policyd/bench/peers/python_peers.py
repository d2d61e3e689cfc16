"""Package python_peers runs the nested-groups workload on Python-native authorization libraries.

Each peer gets the same users, nested groups and documents (read from the
workload's relationships) in its own model, built once, and answers the same
``document#view@user`` queries: cedarpy (policies and entities parsed once),
casbin's ``FastEnforcer`` (role hierarchy, policies indexed by object), oso 0.27
(Polar rules over Python objects) and a naive SQLite recursive CTE. A peer
that is not installed is skipped with the reason; install them with
``scripts/install_bench_peers.sh``.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyd.bench.workloads import GROUPS_POLICY, Query, Workload

Checker = Callable[[Query], bool]


@dataclass(slots=True)
class GroupsModel:
    """The nested-groups workload as plain maps: what every peer is built from."""

    user_groups: dict[str, list[str]] = field(default_factory=dict)
    group_parents: dict[str, list[str]] = field(default_factory=dict)
    doc_groups: dict[str, list[str]] = field(default_factory=dict)
    doc_users: dict[str, list[str]] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)

    @classmethod
    def from_workload(cls, workload: Workload) -> GroupsModel:
        """Read a GROUPS_POLICY workload's relationships; refuse any other policy."""
        if workload.policy != GROUPS_POLICY:
            raise ValueError(f"{workload.name} is not a nested-groups workload")
        model = cls()
        for rel in workload.relationships:
            resource, subject = rel.resource, rel.subject
            if resource.type == "group":
                model.groups.add(resource.id)
                if subject.type == "group":
                    model.groups.add(subject.id)
                    model.group_parents.setdefault(subject.id, []).append(resource.id)
                else:
                    model.user_groups.setdefault(subject.id, []).append(resource.id)
            elif subject.type == "group":
                model.doc_groups.setdefault(resource.id, []).append(subject.id)
            else:
                model.doc_users.setdefault(resource.id, []).append(subject.id)
        return model

    @property
    def docs(self) -> set[str]:
        """Every document id that has a viewer group or a user."""
        return set(self.doc_groups) | set(self.doc_users)


def unavailable(module: str) -> str | None:
    """Why ``module`` cannot be imported, or None."""
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken native wheel raises more than ImportError
        return (
            f"{module} is not installed ({type(e).__name__}: {e}); "
            "run scripts/install_bench_peers.sh"
        )
    return None


# ---- cedarpy ---------------------------------------------------------------------------------

CEDAR_POLICY = """
permit (principal, action == Action::"view", resource)
when { principal in resource.viewers || principal in resource.owners };
"""


def cedar(model: GroupsModel) -> Checker:
    """Cedarpy with a pre-parsed PolicySet and Entities: users and groups form its hierarchy."""
    cedarpy = importlib.import_module("cedarpy")

    def ref(kind: str, id_: str) -> dict[str, str]:
        return {"type": kind, "id": id_}

    entities: list[dict[str, Any]] = []
    for user, parents in model.user_groups.items():
        entities.append(
            {"uid": ref("User", user), "attrs": {}, "parents": [ref("Group", g) for g in parents]}
        )
    for group in model.groups:
        parents = model.group_parents.get(group, [])
        entities.append(
            {"uid": ref("Group", group), "attrs": {}, "parents": [ref("Group", g) for g in parents]}
        )
    for doc in model.docs:
        entities.append(
            {
                "uid": ref("Document", doc),
                "attrs": {
                    "viewers": [
                        {"__entity": ref("Group", g)} for g in model.doc_groups.get(doc, [])
                    ],
                    "owners": [{"__entity": ref("User", u)} for u in model.doc_users.get(doc, [])],
                },
                "parents": [],
            }
        )
    policies = cedarpy.PolicySet.from_str(CEDAR_POLICY)
    parsed = cedarpy.Entities.from_json_str(json.dumps(entities))
    is_authorized = cedarpy.is_authorized
    allow = cedarpy.Decision.Allow

    def check(q: Query) -> bool:
        request = {
            "principal": ref("User", q.subject.id),
            "action": ref("Action", "view"),
            "resource": ref("Document", q.resource.id),
            "context": {},
        }
        return bool(is_authorized(request, policies, parsed).decision == allow)

    return check


# ---- casbin ----------------------------------------------------------------------------------

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.obj == p.obj && r.act == p.act && g(r.sub, p.sub)
"""


def casbin(model: GroupsModel) -> Checker:
    """Casbin ``FastEnforcer``: users and groups in a role hierarchy, policies indexed by object."""
    casbin_module = importlib.import_module("casbin")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.conf"
        path.write_text(CASBIN_MODEL)
        # cache_key_order=[1]: only the policies of the requested object are matched.
        enforcer = casbin_module.FastEnforcer(str(path), cache_key_order=[1])
    depth = 1 + max((len(_chain(model, g)) for g in model.groups), default=1)
    enforcer.get_role_manager().max_hierarchy_level = max(10, depth + 1)
    grouping = [[u, g] for u, gs in model.user_groups.items() for g in gs]
    grouping += [[child, parent] for child, ps in model.group_parents.items() for parent in ps]
    policies = [[g, doc, "view"] for doc, gs in model.doc_groups.items() for g in gs]
    policies += [[u, doc, "view"] for doc, us in model.doc_users.items() for u in us]
    enforcer.add_grouping_policies(grouping)
    enforcer.add_policies(policies)
    enforce = enforcer.enforce

    def check(q: Query) -> bool:
        return bool(enforce(q.subject.id, q.resource.id, "view"))

    return check


def _chain(model: GroupsModel, group: str) -> list[str]:
    out, pending = [group], list(model.group_parents.get(group, []))
    while pending:
        g = pending.pop()
        out.append(g)
        pending.extend(model.group_parents.get(g, []))
    return out


# ---- oso -------------------------------------------------------------------------------------

OSO_RULES = """
allow(user: User, "view", doc: Document) if user.id in doc.owners;
allow(user: User, "view", doc: Document) if
    group in user.groups and within(group, doc);
within(group: Group, doc: Document) if group.id in doc.viewers;
within(group: Group, doc: Document) if
    parent in group.parents and within(parent, doc);
"""


class _OsoGroup:
    def __init__(self, id_: str) -> None:
        self.id = id_
        self.parents: list[_OsoGroup] = []


class _OsoUser:
    def __init__(self, id_: str, groups: list[_OsoGroup]) -> None:
        self.id = id_
        self.groups = groups


class _OsoDocument:
    def __init__(self, id_: str, viewers: list[str], owners: list[str]) -> None:
        self.id = id_
        self.viewers = viewers
        self.owners = owners


def oso(model: GroupsModel) -> Checker:
    """Oso 0.27: Polar rules walk a user's groups up to the document's viewer groups."""
    oso_module = importlib.import_module("oso")
    engine = oso_module.Oso()
    engine.register_class(_OsoUser, name="User")
    engine.register_class(_OsoGroup, name="Group")
    engine.register_class(_OsoDocument, name="Document")
    engine.load_str(OSO_RULES)
    groups = {g: _OsoGroup(g) for g in model.groups}
    for child, parents in model.group_parents.items():
        groups[child].parents = [groups[p] for p in parents]
    users = {u: _OsoUser(u, [groups[g] for g in gs]) for u, gs in model.user_groups.items()}
    docs = {
        d: _OsoDocument(d, model.doc_groups.get(d, []), model.doc_users.get(d, []))
        for d in model.docs
    }
    nobody = _OsoDocument("", [], [])
    is_allowed = engine.is_allowed

    def check(q: Query) -> bool:
        user = users.get(q.subject.id) or _OsoUser(q.subject.id, [])
        return bool(is_allowed(user, "view", docs.get(q.resource.id, nobody)))

    return check


# ---- naive SQLite recursive CTE --------------------------------------------------------------

CTE_CHECK = """
WITH RECURSIVE anc(gid) AS (
    SELECT resource_id FROM relationships
    WHERE subject_type = 'user' AND subject_id = :user AND resource_type = 'group'
      AND relation = 'member'
    UNION
    SELECT r.resource_id FROM anc CROSS JOIN relationships AS r
    WHERE r.subject_type = 'group' AND r.subject_id = anc.gid AND r.subject_relation = 'member'
      AND r.resource_type = 'group' AND r.relation = 'member'
)
SELECT EXISTS (
    SELECT 1 FROM relationships
    WHERE resource_type = 'document' AND resource_id = :doc AND relation IN ('owner', 'viewer')
      AND subject_type = 'user' AND subject_id = :user
) OR EXISTS (
    SELECT 1 FROM anc CROSS JOIN relationships AS r
    WHERE r.resource_type = 'document' AND r.resource_id = :doc AND r.relation = 'viewer'
      AND r.subject_type = 'group' AND r.subject_id = anc.gid AND r.subject_relation = 'member'
)
"""


@contextmanager
def naive_cte(workload: Workload) -> Iterator[Checker]:
    """A relationships table with covering indexes both ways and one recursive CTE per check.

    The database is a file, as a service's would be. No ANALYZE: with statistics
    SQLite 3.40 builds a Bloom filter over the whole table on every check (about
    150× slower on this workload).
    """
    tmp = tempfile.TemporaryDirectory()
    connection = sqlite3.connect(Path(tmp.name) / "naive.db", check_same_thread=False)
    try:
        connection.executescript(
            """
            CREATE TABLE relationships (
                resource_type TEXT, resource_id TEXT, relation TEXT,
                subject_type TEXT, subject_id TEXT, subject_relation TEXT);
            """
        )
        connection.executemany(
            "INSERT INTO relationships VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    r.resource.type,
                    r.resource.id,
                    r.relation,
                    r.subject.type,
                    r.subject.id,
                    r.subject.relation or "",
                )
                for r in workload.relationships
            ),
        )
        connection.executescript(
            """
            CREATE INDEX by_resource ON relationships
                (resource_type, resource_id, relation, subject_type, subject_id, subject_relation);
            CREATE INDEX by_subject ON relationships
                (subject_type, subject_id, subject_relation, resource_type, relation, resource_id);
            """
        )
        execute = connection.execute

        def check(q: Query) -> bool:
            row = execute(CTE_CHECK, {"user": q.subject.id, "doc": q.resource.id}).fetchone()
            return bool(row[0])

        yield check
    finally:
        connection.close()
        tmp.cleanup()


PEERS: dict[str, tuple[str, Callable[[GroupsModel], Checker]]] = {
    "cedarpy": ("cedarpy", cedar),
    "casbin FastEnforcer": ("casbin", casbin),
    "oso 0.27": ("oso", oso),
}
"""Library peers: display name → (module to import, builder)."""
