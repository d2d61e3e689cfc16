"""The checked-in generated code matches what scripts/gen_proto.py makes from proto/ now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "policyd" / "api" / "gen"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    checked_in = {p.name: p.read_text() for p in GEN.iterdir() if p.is_file()}
    stale = sorted(n for n in fresh.keys() | checked_in.keys() if fresh.get(n) != checked_in.get(n))
    assert not stale, f"regenerate with: python scripts/gen_proto.py (stale: {', '.join(stale)})"


def test_every_message_and_field_is_documented() -> None:
    undocumented: list[str] = []
    for proto in sorted((ROOT / "proto" / "policyd" / "v1").glob("*.proto")):
        lines = proto.read_text().splitlines()
        for number, line in enumerate(lines):
            text = line.strip()
            declares = text.startswith(("message ", "service ", "enum ", "rpc ", "oneof "))
            is_field = text.endswith(";") and "=" in text and not text.startswith(("option", "//"))
            if (declares or is_field) and not lines[number - 1].strip().startswith("//"):
                undocumented.append(f"{proto.name}:{number + 1}: {text}")
    assert not undocumented
