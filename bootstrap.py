#!/usr/bin/env python3
"""Set up a local virtual environment (.venv) and run the demo, every test, or the real-browser check:
`python3 bootstrap.py demo|test|browser`."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".asyrp_edu_installed"
MADE = VENV / ".asyrp_edu_made"  # written right after the venv's Python: a half-made .venv is known as this script's


EXTRAS = {"demo": "", "test": "test,notebooks,browser", "browser": "browser"}  # what each command installs


def _install_fingerprint() -> str:
    """A hash of everything that decides what gets installed (and of the venv's Python), so a second run skips pip."""
    digest = hashlib.sha256(str(VENV).encode())  # a moved clone: the editable install must point at the new place
    for path in (ROOT / "pyproject.toml", ROOT / "constraints.txt", VENV / "pyvenv.cfg"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _venv_python_version() -> tuple[int, ...] | None:
    """(major, minor) of the Python behind .venv, from its pyvenv.cfg; None when it cannot be read."""
    try:
        for line in (VENV / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return tuple(int(part) for part in value.strip().split(".")[:2])
    except (OSError, ValueError):
        return None
    return None


def _venv_works() -> bool:
    """True when .venv has a Python that runs pip (a half-made or moved venv does not)."""
    if not PYTHON.exists():
        return False
    return subprocess.run([str(PYTHON), "-m", "pip", "--version"], capture_output=True).returncode == 0


def ensure_venv(extras: str) -> None:
    """Create .venv and install the package with `extras`, pinned by constraints.txt, unless already done."""
    if sys.version_info < (3, 11):  # the pinned versions in constraints.txt (numpy, diffusers, …) need 3.11
        raise SystemExit(f"bootstrap.py needs Python >= 3.11 for the tested versions in constraints.txt; this is "
                         f"{sys.version.split()[0]}. Run it with a newer python3 (e.g. `python3.11 bootstrap.py ...`)")
    ours = STAMP.exists() or MADE.exists()
    old = _venv_python_version()
    old = old if old is not None and old < (3, 11) else None  # a .venv of an older Python cannot take the pins
    if old and not ours:
        raise SystemExit(f"{VENV} runs Python {'.'.join(map(str, old))}, older than the 3.11 the tested versions "
                         "need, and was not made by this script; move it away, then run this again")
    if old or not _venv_works():
        if PYTHON.exists() and not ours:  # somebody's own .venv (uv makes them without pip): keep it
            raise SystemExit(f"{VENV} exists without pip and was not made by this script; move it away (or install "
                             "pip into it), then run this again")
        print(f"creating {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=False, clear=True).create(VENV)
            MADE.write_text("")
            subprocess.run([str(PYTHON), "-m", "ensurepip", "--upgrade", "--default-pip"], check=True)
        except subprocess.CalledProcessError as error:  # ensurepip is missing (Debian and Ubuntu split it off)
            # half made, without pip: removed, so that the next run does not take it for somebody else's
            shutil.rmtree(VENV, ignore_errors=True)
            raise SystemExit("could not put pip into .venv; on Debian or Ubuntu run `apt-get install python3-venv` "
                             "(or python3.X-venv for your version), then run this again") from error
        except BaseException:  # interrupted (Ctrl-C) half way: removed too, and the next run starts clean
            shutil.rmtree(VENV, ignore_errors=True)
            raise
    fingerprint = _install_fingerprint()
    stamp = STAMP.read_text().split("\n") if STAMP.exists() else []  # [fingerprint, extra, extra, …]
    installed = set(stamp[1:]) if stamp[:1] == [fingerprint] else None  # None: nothing valid installed yet
    wanted = {e for e in extras.split(",") if e}
    if installed is not None and wanted <= installed:
        return
    extras = ",".join(sorted(wanted | (installed or set())))
    print(f"installing asyrp-edu[{extras}] into {VENV} (pinned by constraints.txt)", flush=True)
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
                    "-e", target], check=True)
    STAMP.write_text("\n".join([fingerprint, *[e for e in extras.split(",") if e]]))


def main(argv: list[str]) -> int:
    """Dispatch `demo`, `test` (extra arguments go to pytest) or `browser` (needs Debian's chromium)."""
    if not argv or argv[0] not in ("demo", "test", "browser"):
        print(__doc__)
        return 2
    ensure_venv(EXTRAS[argv[0]])
    env = dict(os.environ)
    if argv[0] == "demo":
        # through the venv's Python, not its bin/asyrp-edu script, whose first line names the folder it was made in
        return subprocess.run([str(PYTHON), "-m", "asyrp_edu.cli", "demo", *argv[1:]], cwd=ROOT, env=env).returncode
    if argv[0] == "browser":
        return subprocess.run([str(PYTHON), str(ROOT / "scripts" / "browser_check.py"), *argv[1:]], cwd=ROOT,
                              env=env).returncode
    env.setdefault("ASYRP_EDU_SMOKE", "1")  # notebooks run with fewer steps under test
    env.setdefault("MPLBACKEND", "Agg")
    # the tests and notebooks (pyproject's testpaths) unless paths are given: `test tests/test_ddim_vs_diffusers.py`
    cmd = [str(PYTHON), "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", *argv[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
