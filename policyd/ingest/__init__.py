"""Package ingest follows the atproto network into the store: records mapped to relationships.

Modules by job: ``frames`` (firehose frames, Jetstream JSON, repo CARs, via
libipld), ``mappings`` (the YAML that says which relationships a record
stands for), ``applier`` (events → one ``RecordSink.apply_records`` per
batch), ``source`` (the WebSocket stream, reconnects, backfill), ``metrics``
and ``command`` (``policyd ingest``). Nothing is imported here, so the CLI can
build its parser without loading websockets or libipld.
"""
