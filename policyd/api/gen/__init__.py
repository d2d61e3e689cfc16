"""Generated protobuf and gRPC code for policyd.v1 (scripts/gen_proto.py)."""
