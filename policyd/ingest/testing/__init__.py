"""Package ingest.testing holds loopback stand-ins for the network: frame encoders and a server.

Tests and ``policyd bench`` use them, never ``policyd ingest``. ``encode``
builds firehose frames, Jetstream messages and repo CARs with real encoders
(libipld: DAG-CBOR blocks, CIDs, a Merkle Search Tree, CAR v1); ``server``
replays them over a real WebSocket on 127.0.0.1 and answers getRepo.
"""
