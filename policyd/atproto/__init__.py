"""Package atproto makes policyd a space's managing app: checkUserAccess with service auth.

Proposal 0016 ("Permissioned Data") lets a space authority defer, at
credential-mint time, to the space's managing app; this package serves that
question from the policy. Its parts, in the order a request meets them:

- ``xrpc``: the HTTP endpoint and its server thread;
- ``spaces``: request parameters, the request → Check mapping and its settings;
- ``service_auth``: the JWT's claims, signature and replay checks;
- ``did``: DID documents from a PLC directory or did:web, cached;
- ``keys``: ES256K and ES256 keys and signatures (the only crypto imports);
- ``syntax``: DIDs, NSIDs and space URIs as atproto spells them;
- ``metrics``: answers and refusals for Prometheus;
- ``testing``: loopback stand-ins for a PLC directory and did:web hosts.

It sits beside ``policyd.api`` and calls the ``Engine``; nothing below imports it.
"""

from policyd.atproto.spaces import METHOD, SpacesConfig, load_config
from policyd.atproto.xrpc import XrpcServer, XrpcSettings

__all__ = ["METHOD", "SpacesConfig", "XrpcServer", "XrpcSettings", "load_config"]
