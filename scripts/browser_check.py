"""Real-browser check: JupyterLab on 127.0.0.1, notebook 05 in headless Chromium, run all, move a slider.

    python scripts/browser_check.py [--notebook notebooks/05_linearity.ipynb] [--screenshot browser_check.png]

Needs Debian's Chromium (`apt-get install chromium`, /usr/bin/chromium) and the Python Playwright package
(`pip install -e ".[browser]"`); Playwright drives the system Chromium, nothing is downloaded. Exits 0 when the
strength slider's image changed after the slider moved, 1 otherwise, and saves a screenshot either way
(also when a step times out).
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(port: int, token: str, root: Path) -> subprocess.Popen:
    """JupyterLab serving `root` on 127.0.0.1:port; returns once it answers."""
    env = dict(os.environ, ASYRP_EDU_SMOKE=os.environ.get("ASYRP_EDU_SMOKE", "1"), MPLBACKEND="Agg")
    lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                            f"--ServerApp.root_dir={root}", "--allow-root"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=1)
            return lab
        except OSError:
            time.sleep(0.5)
    lab.terminate()
    raise RuntimeError("JupyterLab did not start within 60 s")


STARTED_JS = """() => [...document.querySelectorAll('.jp-InputArea-prompt')]
    .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""


def accept_kernel_dialog(page, wait_ms: int = 3_000) -> bool:
    """Click "Select" if JupyterLab asks which kernel to start (it sometimes does even for a notebook that names
    one), since the dialog blocks every click behind it. True if there was one."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    dialog = page.locator(".jp-Dialog")
    try:
        dialog.wait_for(state="visible", timeout=wait_ms)
    except PlaywrightTimeout:
        return False
    print("JupyterLab asked for a kernel; selecting the notebook's own (Python 3)")
    dialog.get_by_role("button", name="Select").click()
    dialog.wait_for(state="hidden", timeout=10_000)
    return True


def run_all_cells(page) -> None:
    """Run ▸ Run All Cells, through JupyterLab's menu."""
    accept_kernel_dialog(page, wait_ms=500)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()


def move_slider(page, url: str, timeout: float) -> bool:
    """Open the notebook, run all cells, move the first strength slider; True if the image under it changed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel", timeout=60_000)
    accept_kernel_dialog(page)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    for attempt in range(3):
        run_all_cells(page)
        try:  # a cell prompt shows [*] or [n] once the kernel took the cells
            page.wait_for_function(STARTED_JS, timeout=30_000)
            break
        except PlaywrightTimeout:  # seen in two of six runs: the first Run All Cells ran nothing
            print(f"no cell started 30 s after Run All Cells (try {attempt + 1}); clicking it again")
    # the first strength slider and the image right under it
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.wait_for(timeout=timeout * 1000)
    image = page.locator(".widget-vbox img").first
    image.wait_for(timeout=60_000)
    time.sleep(2)
    before = image.get_attribute("src")
    handle.focus()
    for _ in range(5):  # five steps of 0.1 to the right: strength 1.0 -> 1.5
        page.keyboard.press("ArrowRight")
    for _ in range(60):
        time.sleep(0.5)
        if image.get_attribute("src") != before:
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default="notebooks/05_linearity.ipynb")
    parser.add_argument("--screenshot", default="browser_check.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for all cells to run")
    args = parser.parse_args()
    if not args.timeout > 0:
        parser.error(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    if not Path(args.chromium).is_file():
        sys.exit(f"no Chromium at {args.chromium}; install Debian's package: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("Playwright is missing: pip install -e '.[browser]' (it drives the system Chromium)")

    port, token = free_port(), secrets.token_hex(16)
    # a copy of the notebook in a scratch folder: JupyterLab may rewrite metadata of what it opens
    root = Path(tempfile.mkdtemp(prefix="asyrp_edu_browser_"))
    shutil.copy(ROOT / args.notebook, root / Path(args.notebook).name)
    lab = start_lab(port, token, root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                changed = move_slider(page, f"http://127.0.0.1:{port}/lab/tree/{Path(args.notebook).name}?token="
                                      f"{token}", args.timeout)
            finally:  # a screenshot either way: on a failure it shows how far the notebook got
                partial = f"{args.screenshot}.tmp"  # renamed when whole: never half a PNG under its name
                page.screenshot(path=partial, full_page=False, type="png")
                os.replace(partial, args.screenshot)
                browser.close()
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    print(f"slider moved, image {'changed' if changed else 'did NOT change'}; screenshot: {args.screenshot}")
    return 0 if changed else 1


if __name__ == "__main__":
    sys.exit(main())
