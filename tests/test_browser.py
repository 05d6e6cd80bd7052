"""The real-browser check (scripts/browser_check.py): opt-in with ASYRP_EDU_BROWSER=1 where Chromium is installed."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("chromium") is None or os.environ.get("ASYRP_EDU_BROWSER") != "1",
                    reason="opt-in: apt-get install chromium, then ASYRP_EDU_BROWSER=1 "
                           "(or `python3 bootstrap.py browser`)")
def test_slider_changes_the_image_in_headless_chromium(tmp_path):
    pytest.importorskip("playwright")
    shot = tmp_path / "browser_check.png"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "browser_check.py"), "--screenshot", str(shot)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert shot.is_file() and shot.stat().st_size > 10_000
