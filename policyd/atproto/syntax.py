"""Package syntax parses the atproto identifiers checkUserAccess takes: DIDs, NSIDs, space URIs.

The rules are those of the atproto reference implementation as the spaces
alpha bundles it (@atproto/syntax: ``DID_REGEX``, ``validateNsidRegex``,
``RECORD_KEY_REGEX`` and ``parseSpaceAtUriString`` in strict mode), so policyd
refuses what the PDS itself would refuse. A space is addressed
``at://{authority DID}/space/{space type NSID}/{skey}`` (proposal 0016,
"Addressing"); the skey follows the record-key syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policyd.errors import InvalidRequestError

DID_MAX_LENGTH = 2048
NSID_MAX_LENGTH = 253 + 1 + 63

_DID = re.compile(r"\Adid:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]\Z")
_NSID = re.compile(
    r"\A[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"(?:\.[a-zA-Z][a-zA-Z0-9]{0,62})\Z"
)
_RECORD_KEY = re.compile(r"\A[a-zA-Z0-9_~.:-]{1,512}\Z")
_SPACE_URI = re.compile(
    r"\Aat://(?P<authority>[^/?#\s]+)/space/(?P<type>[^/?#\s]+)/(?P<skey>[^/?#\s]+)\Z"
)
_FRAGMENT = re.compile(r"\A[a-zA-Z0-9._~-]{1,128}\Z")


def is_did(text: str) -> bool:
    """Whether ``text`` is a syntactically valid DID (any method)."""
    return len(text) <= DID_MAX_LENGTH and _DID.match(text) is not None


def is_nsid(text: str) -> bool:
    """Whether ``text`` is a valid NSID (at least three segments)."""
    return len(text) <= NSID_MAX_LENGTH and _NSID.match(text) is not None


def is_record_key(text: str) -> bool:
    """Whether ``text`` is a valid record key, the syntax a space's skey follows."""
    return _RECORD_KEY.match(text) is not None and text not in (".", "..")


@dataclass(frozen=True, slots=True)
class SpaceRef:
    """A space's URI and its parts."""

    uri: str
    authority: str
    space_type: str
    skey: str


def parse_space(uri: str, field: str = "space") -> SpaceRef:
    """Parse ``at://{did}/space/{nsid}/{skey}``; InvalidRequestError naming ``field`` if not one.

    A record URI inside a space (with author, collection and rkey), a query, a
    fragment or a trailing slash is not a space reference.
    """
    match = _SPACE_URI.match(uri)
    if match is None:
        raise InvalidRequestError(
            f"{field} must be a space URI at://<did>/space/<type>/<skey>, got {uri[:200]!r}",
            field=field,
        )
    authority, space_type, skey = match.group("authority", "type", "skey")
    if not is_did(authority):
        raise InvalidRequestError(f"{field}: the authority {authority!r} is not a DID", field=field)
    if not is_nsid(space_type):
        raise InvalidRequestError(
            f"{field}: the space type {space_type!r} is not an NSID", field=field
        )
    if not is_record_key(skey):
        raise InvalidRequestError(f"{field}: the space key {skey!r} is not valid", field=field)
    return SpaceRef(uri, authority, space_type, skey)


def parse_did(text: str, field: str) -> str:
    """``text`` if it is a DID, else InvalidRequestError naming ``field``."""
    if not is_did(text):
        raise InvalidRequestError(f"{field} must be a DID, got {text[:200]!r}", field=field)
    return text


def parse_service_ref(text: str, field: str = "service_did") -> tuple[str, str]:
    """Split a service identifier ``did:…#fragment`` into the DID and the fragment."""
    did, sep, fragment = text.partition("#")
    if not sep or not is_did(did) or _FRAGMENT.match(fragment) is None:
        raise InvalidRequestError(
            f"{field} must be a service identifier did:…#fragment (as a space's managingApp "
            f"names it), got {text!r}",
            field=field,
        )
    return did, fragment
