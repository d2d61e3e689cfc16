"""Proto to domain conversion: validated references are remembered, bad ones refused every time."""

from __future__ import annotations

import pytest

from policyd.api import convert
from policyd.api.convert import object_from_proto, subject_from_proto
from policyd.api.gen import core_pb2
from policyd.errors import InvalidRequestError
from policyd.relationship import ObjectRef, SubjectRef


def obj(type_name: str, object_id: str) -> core_pb2.ObjectReference:
    return core_pb2.ObjectReference(object_type=type_name, object_id=object_id)


def test_a_reference_named_again_is_the_one_validated_before() -> None:
    first = object_from_proto(obj("doc", "d1"), "resource")
    assert first == ObjectRef("doc", "d1")
    assert object_from_proto(obj("doc", "d1"), "resource") is first
    message = core_pb2.SubjectReference(object=obj("group", "g"), optional_relation="member")
    subject = subject_from_proto(message, "subject")
    assert subject == SubjectRef("group", "g", "member")
    assert subject_from_proto(message, "subject") is subject
    plain = subject_from_proto(core_pb2.SubjectReference(object=obj("group", "g")), "subject")
    assert plain == SubjectRef("group", "g")  # another relation, another subject


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_bad_reference_is_refused_every_time_naming_its_field(attempt: int) -> None:
    object_from_proto(obj("doc", "fine"), "items[0].resource")
    with pytest.raises(InvalidRequestError) as caught:
        object_from_proto(obj("doc", "bad\n"), "items[3].resource")
    assert caught.value.field == "items[3].resource.object_id"
    with pytest.raises(InvalidRequestError) as caught:
        subject_from_proto(core_pb2.SubjectReference(object=obj("", "u")), "items[1].subject")
    assert caught.value.field == "items[1].subject.object.object_type"


def test_the_memory_of_references_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "REFS_REMEMBERED", 10)
    for i in range(25):
        ref = object_from_proto(obj("doc", f"bound{i}"), "resource")
        assert ref == ObjectRef("doc", f"bound{i}")
    assert len(convert._OBJECTS) <= 10
