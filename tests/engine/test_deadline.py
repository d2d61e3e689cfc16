"""Long engine work stops at its deadline or when its caller leaves, with nothing partial sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from policyd.engine import Engine
from policyd.engine.deadline import Deadline, items
from policyd.errors import CancelledError, DeadlineExceededError
from policyd.relationship import ObjectRef
from tests.engine.lookups import ALICE, POLICY, library
from tests.engine.queries import MakeEngine

Ask = Callable[[Engine, Deadline], object]

CALLS: list[tuple[str, Ask]] = [
    ("list-objects", lambda e, d: e.list_objects("doc", "view", ALICE, deadline=d)),
    (
        "list-subjects",
        lambda e, d: e.list_subjects(ObjectRef("doc", "d002"), "view", "user", deadline=d),
    ),
    ("expand", lambda e, d: e.expand(ObjectRef("doc", "d002"), "view", deadline=d)),
]


@pytest.mark.parametrize(("name", "ask"), CALLS, ids=[name for name, _ in CALLS])
def test_a_passed_deadline_stops_the_work(make_engine: MakeEngine, name: str, ask: Ask) -> None:
    engine = make_engine(POLICY, library(30))
    with pytest.raises(DeadlineExceededError) as raised:
        ask(engine, Deadline(0.0))
    assert raised.value.code == "deadline-exceeded"


@pytest.mark.parametrize(("name", "ask"), CALLS, ids=[name for name, _ in CALLS])
def test_a_cancelled_call_stops_the_work(make_engine: MakeEngine, name: str, ask: Ask) -> None:
    engine = make_engine(POLICY, library(30))
    deadline = Deadline(60.0)
    deadline.cancelled = True
    with pytest.raises(CancelledError):
        ask(engine, deadline)


@pytest.mark.parametrize(("name", "ask"), CALLS, ids=[name for name, _ in CALLS])
def test_time_to_spare_changes_nothing(make_engine: MakeEngine, name: str, ask: Ask) -> None:
    engine = make_engine(POLICY, library(30))
    assert ask(engine, Deadline(60.0)) == ask(engine, Deadline(None))


def test_the_deadline_is_checked_at_every_checkpoint() -> None:
    checked: list[int] = []

    class Counting(Deadline):
        def check(self) -> None:
            checked.append(1)
            if len(checked) == 3:
                raise DeadlineExceededError("stop")

    def work() -> Iterator[int | None]:
        for i in range(10):
            yield None
            yield i

    with pytest.raises(DeadlineExceededError):
        list(items(work(), Counting()))
    assert len(checked) == 3
    assert list(items(work(), None)) == list(range(10))
