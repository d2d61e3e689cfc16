"""The page's assets: all shipped in the package, the vendored library as npm published it."""

from __future__ import annotations

import hashlib
import json
import re

from policyd.playground.server import static_dir

VENDOR = static_dir() / "vendor"


def test_the_vendored_files_are_the_ones_the_manifest_names() -> None:
    manifest = json.loads((VENDOR / "VENDORED.json").read_text(encoding="utf-8"))
    assert (manifest["package"], manifest["license"]) == ("cytoscape", "MIT")
    assert manifest["integrity"].startswith("sha512-")
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    licence = (VENDOR / "cytoscape.LICENSE").read_text(encoding="utf-8")
    assert "Permission is hereby granted, free of charge" in licence


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for name in ("index.html", "playground.js", "playground.css"):
        text = (static_dir() / name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "@import" not in text, name
    page = (static_dir() / "index.html").read_text(encoding="utf-8")
    assert "default-src 'self'" in page  # the browser itself refuses anything else
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', page):
        assert (static_dir() / asset).is_file(), asset
