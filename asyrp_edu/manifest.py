"""Rewrite weights/manifest.json with the sha256 of every shipped safetensors file: `python -m asyrp_edu.manifest`."""
from __future__ import annotations

import json
from pathlib import Path

from .checks import sha256_of
from .models import MANIFEST, WEIGHTS_DIR, atomic_write


def write_manifest() -> dict:
    """Hash every weights/*.safetensors and write the manifest atomically; returns it."""
    manifest = {p.name: {"sha256": sha256_of(p), "bytes": p.stat().st_size}
                for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))}
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(MANIFEST, lambda tmp: Path(tmp).write_text(text))
    return manifest


if __name__ == "__main__":
    print(json.dumps(write_manifest(), indent=2))
