"""Package api serves the policyd.v1 gRPC API over an Engine: servicers, interceptors, metrics.

Importing this package loads nothing; ``policyd.api.server`` builds the server
and ``policyd.api.gen`` holds the generated protobuf code the client also uses.
"""
