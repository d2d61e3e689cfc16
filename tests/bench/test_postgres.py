"""The postgres bench section runs against the test PostgreSQL (no timings asserted)."""

from __future__ import annotations

from policyd.bench.postgres import postgres_rows, schema_url, serve_startup


def test_the_postgres_section_measures_every_row(pg_dsn: str) -> None:
    rows = postgres_rows(pg_dsn, None, count=500, seconds=0.3, delay_ms=0.5)
    measures = [str(r["measure"]) for r in rows]
    assert measures[:4] == [
        "import 500, empty store",
        "import 500, non-empty store",
        "single writes, 2 servers x 1 clients",
        "single writes, 2 servers x 4 clients",
    ]
    assert measures[4:6] == [
        "single writes, 2 servers x 1 clients beside a 500 import by one of them",
        "single writes, 2 servers x 1 clients beside a 500 import by another process",
    ]
    assert measures[6] == "gRPC writes, 2 policyd serve x 8 clients"
    delayed = [m.split(",")[1].strip() for m in measures[7:9]]
    assert delayed == ["2 servers x 1 clients", "2 servers x 4 clients"]
    assert all("ms round trip (0.5 ms added)" in m for m in measures[7:9])
    assert measures[9] == "propagation A to B, 300 writes"
    assert all(int(r["per_s"]) > 0 for r in rows if "per_s" in r)
    assert all(0 <= float(r["p50_ms"]) <= float(r["p99_ms"]) for r in rows if "p50_ms" in r)


def test_serve_starts_on_postgres_three_ways_and_answers_right(pg_dsn: str) -> None:
    rows = serve_startup(pg_dsn, 2_000)
    assert [r["measure"] for r in rows] == [
        "import 2,000 to serve from",
        "serve 2,000, no snapshot",
        "serve 2,000, snapshot path, no file: build, save",
        "serve 2,000, from the snapshot",
    ]
    assert rows[0]["per_s"] > 0
    starts = rows[1:]
    assert [r["wrong"] for r in starts] == [0, 0, 0]  # an allowed and a denied Check each
    assert all(r["first_check_s"] > 0 and r["rss_b_per_rel"] > 0 for r in starts)
    assert starts[0]["snapshot_mib"] == 0  # "off" writes none


def test_a_schema_url_keeps_the_dsn_options() -> None:
    url = schema_url("postgresql://u:p@127.0.0.1:5432/db?sslmode=disable", "b_1")
    assert url == "postgresql://u:p@127.0.0.1:5432/db?sslmode=disable&schema=b_1"
