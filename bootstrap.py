#!/usr/bin/env python3
"""Set up a local virtual environment (.venv) and run the demo, every test, or the real-browser check:
`python3 bootstrap.py demo|test|browser`."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".asyrp_edu_installed"


def _install_fingerprint(extras: str) -> str:
    """A hash of everything that decides what gets installed, so a second run skips pip."""
    digest = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(extras: str) -> None:
    """Create .venv and install the package with `extras`, pinned by constraints.txt, unless already done."""
    if sys.version_info < (3, 10):
        raise SystemExit(f"asyrp_edu needs Python >= 3.10; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = _install_fingerprint(extras)
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    print(f"installing asyrp-edu[{extras}] into {VENV} (pinned by constraints.txt)", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
                    "-e", f"{ROOT}[{extras}]"], check=True)
    STAMP.write_text(fingerprint)


def main(argv: list[str]) -> int:
    """Dispatch `demo`, `test` (extra arguments go to pytest) or `browser` (needs Debian's chromium)."""
    if not argv or argv[0] not in ("demo", "test", "browser"):
        print(__doc__)
        return 2
    ensure_venv("test,notebooks,browser")
    env = dict(os.environ)
    if argv[0] == "demo":
        return subprocess.run([str(BIN / "asyrp-edu"), "demo", *argv[1:]], cwd=ROOT, env=env).returncode
    if argv[0] == "browser":
        return subprocess.run([str(PYTHON), str(ROOT / "scripts" / "browser_check.py"), *argv[1:]], cwd=ROOT,
                              env=env).returncode
    env.setdefault("ASYRP_EDU_SMOKE", "1")  # notebooks run with fewer steps under test
    env.setdefault("MPLBACKEND", "Agg")
    cmd = [str(PYTHON), "-m", "pytest", "tests", "notebooks", "--nbval-lax", "-p", "no:cacheprovider",
           *argv[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
