"""Generated protobuf and gRPC modules for policyd.v1; regenerate with scripts/gen_proto.py."""
