"""Fetch the playground's JavaScript graph library from npm into the package, with its licence.

Usage: ``python scripts/vendor_js.py [--version X.Y.Z]`` (default: the version
in policyd/playground/static/vendor/VENDORED.json). Needs ``npm``. The copy is
committed, so the package works offline; this script is how it is renewed.
``npm pack`` checks the tarball against the registry's integrity hash, which
the manifest records with the SHA-256 of each file copied (tests check those).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "policyd" / "playground" / "static" / "vendor"
MANIFEST = VENDOR / "VENDORED.json"
PACKAGE = "cytoscape"
# file in the npm tarball -> file in the vendor folder
FILES = {
    "package/dist/cytoscape.min.js": "cytoscape.min.js",
    "package/LICENSE": "cytoscape.LICENSE",
}


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(version: str) -> dict[str, object]:
    """Download ``cytoscape@version`` with npm, copy its files, and return the manifest."""
    with tempfile.TemporaryDirectory() as directory:
        out = subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{version}", "--json", "--pack-destination", directory],
            check=True,
            capture_output=True,
            text=True,
        )
        (packed,) = json.loads(out.stdout)
        with tarfile.open(Path(directory) / packed["filename"]) as tar:
            for member, target in FILES.items():
                source = tar.extractfile(member)
                if source is None:
                    raise SystemExit(f"{member} is not a file in {packed['filename']}")
                (VENDOR / target).write_bytes(source.read())
    return {
        "package": PACKAGE,
        "version": packed["version"],
        "license": "MIT",
        "integrity": packed["integrity"],
        "files": {target: sha256(VENDOR / target) for target in FILES.values()},
    }


def main() -> None:
    """Parse arguments, vendor, write the manifest."""
    parser = argparse.ArgumentParser(description=__doc__)
    current = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    parser.add_argument("--version", default=current.get("version"), required=not current)
    args = parser.parse_args()
    VENDOR.mkdir(parents=True, exist_ok=True)
    manifest = vendor(args.version)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"vendored {PACKAGE}@{manifest['version']} into {VENDOR.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
