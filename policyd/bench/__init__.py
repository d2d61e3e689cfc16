"""Package bench holds policyd's benchmark harness: seeded workloads, measurements and peers.

It sits under the CLI and above api and engine: ``policyd bench`` calls
``policyd.bench.harness.main``. The peers (SpiceDB embedded, cedarpy, casbin,
oso) are optional and installed by ``scripts/install_bench_peers.sh``.
"""
