"""Firehose decode speed: policyd's libipld decoder against the atproto SDK's and cbor2's.

Builds realistic ``#commit`` frames (one record, an MST node, the signed
commit, in a CAR; the shape of a follow on the live firehose) with libipld and
decodes each one fully (header, body, CAR, the record) three ways:

- ``policyd``: ``policyd.ingest.frames.decode_frame`` (libipld, plain dicts);
- ``atproto-sdk``: ``atproto.parse_subscribe_repos_message`` on a
  ``firehose_models.MessageFrame`` and ``CAR.from_bytes`` on its blocks (the
  SDK's own firehose client path, libipld under pydantic models);
- ``cbor2``: ``cbor2`` with a hand-written CAR reader.

And ``policyd (skip)``: the same frame when its collection is not mapped, so
the CAR is never decoded (most of the network's traffic: posts and likes).

Prints frames/s per decoder; decoders whose package is missing are reported
as such. Run: ``python benchmarks/ingest_decode.py [--frames N]``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policyd.ingest.testing.encode import FOLLOW, Op, commit_frame, follow, tid


def frames(count: int) -> list[bytes]:
    return [
        commit_frame(i, f"did:plc:r{i % 997}", tid(i), [Op("create", FOLLOW, f"k{i}", follow(s))])
        for i, s in ((i, f"did:plc:s{i}") for i in range(1, count + 1))
    ]


def decoders() -> dict[str, Callable[[bytes], object] | str]:
    found: dict[str, Callable[[bytes], object] | str] = {}
    from policyd.ingest.frames import decode_frame

    found["policyd"] = lambda f: decode_frame(f, {FOLLOW})
    found["policyd (skip)"] = lambda f: decode_frame(f, {"app.example.none"})
    try:
        from atproto import CAR, firehose_models, parse_subscribe_repos_message

        def sdk(raw: bytes) -> object:
            message = parse_subscribe_repos_message(firehose_models.MessageFrame.from_bytes(raw))
            car = CAR.from_bytes(message.blocks)  # type: ignore[union-attr]
            return [car.blocks.get(op.cid) for op in message.ops]  # type: ignore[union-attr]

        found["atproto-sdk"] = sdk
    except ImportError as e:
        found["atproto-sdk"] = f"not installed ({e.name})"
    try:
        import cbor2

        def cbor(raw: bytes) -> object:
            stream = io.BytesIO(raw)
            decoder = cbor2.CBORDecoder(stream)
            decoder.decode()
            body = decoder.decode()
            data = body["blocks"]
            pos = 0
            blocks = {}
            while pos < len(data):
                size, pos = _varint(data, pos)
                if not blocks and pos == _varint(data, 0)[1]:  # the header
                    pos += size
                    blocks[b""] = None
                    continue
                blocks[data[pos : pos + 36]] = cbor2.loads(data[pos + 36 : pos + size])
                pos += size
            return blocks

        found["cbor2"] = cbor
    except ImportError as e:
        found["cbor2"] = f"not installed ({e.name})"
    return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; best is kept")
    args = parser.parse_args()
    sample = frames(args.frames)
    size = sum(map(len, sample)) / len(sample)
    print(f"{len(sample)} #commit frames of one follow each, {size:.0f} bytes on average")
    found = decoders()
    best: dict[str, float] = {}
    # Interleaved rounds, best kept: the machine is shared, so one slow round says little.
    for _ in range(args.rounds):
        for name, decode in found.items():
            if isinstance(decode, str):
                continue
            started = time.perf_counter()
            for raw in sample:
                decode(raw)
            elapsed = time.perf_counter() - started
            best[name] = min(best.get(name, elapsed), elapsed)
    for name, decode in found.items():
        if isinstance(decode, str):
            print(f"  {name:16} {decode}")
            continue
        per_frame = best[name] / len(sample)
        print(f"  {name:16} {1 / per_frame:>10,.0f} frames/s  {per_frame * 1e6:6.1f} µs/frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
