"""bootstrap.py: each command installs what it needs once, a later command adds only what is missing."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bootstrap(tmp_path, monkeypatch):
    """bootstrap.py with its venv in tmp_path and pip calls recorded instead of run."""
    spec = importlib.util.spec_from_file_location("bootstrap_under_test", ROOT / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("version = 3.11.2\n")
    monkeypatch.setattr(module, "VENV", venv)
    monkeypatch.setattr(module, "STAMP", venv / ".asyrp_edu_installed")
    monkeypatch.setattr(module, "_venv_works", lambda: True)
    module.installs = []
    monkeypatch.setattr(module.subprocess, "run", lambda cmd, check: module.installs.append(cmd[-1]))
    return module


def test_each_command_installs_only_what_is_missing(bootstrap):
    bootstrap.ensure_venv(bootstrap.EXTRAS["demo"])
    assert bootstrap.installs == [str(ROOT)]  # the demo needs no test or notebook extras
    bootstrap.ensure_venv(bootstrap.EXTRAS["demo"])
    assert len(bootstrap.installs) == 1  # done already
    bootstrap.ensure_venv(bootstrap.EXTRAS["test"])
    assert bootstrap.installs[-1] == f"{ROOT}[browser,notebooks,test]"
    for command in ("demo", "browser", "test"):
        bootstrap.ensure_venv(bootstrap.EXTRAS[command])
    assert len(bootstrap.installs) == 2  # everything they need is in
    (bootstrap.VENV / "pyvenv.cfg").write_text("version = 3.12.1\n")  # another Python behind .venv: install again
    bootstrap.ensure_venv(bootstrap.EXTRAS["demo"])
    assert bootstrap.installs[-1] == str(ROOT) and len(bootstrap.installs) == 3


def test_an_old_python_gets_a_clear_message(bootstrap, monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 10, 12))
    with pytest.raises(SystemExit, match="Python >= 3.11"):
        bootstrap.ensure_venv("")


def test_a_venv_this_script_did_not_make_is_left_alone(bootstrap, monkeypatch):
    monkeypatch.setattr(bootstrap, "_venv_works", lambda: False)  # e.g. `uv venv`: a Python without pip
    monkeypatch.setattr(bootstrap, "PYTHON", bootstrap.VENV / "pyvenv.cfg")  # any file that exists
    with pytest.raises(SystemExit, match="not made by this script"):
        bootstrap.ensure_venv("")
    assert (bootstrap.VENV / "pyvenv.cfg").exists()


def test_a_venv_left_half_made_by_a_missing_ensurepip_does_not_block_the_rerun(bootstrap, monkeypatch):
    """Debian without python3-venv: creating .venv fails after its Python is written; the rerun must not refuse it."""
    import subprocess

    def half_made(self, env_dir):
        Path(env_dir, "bin").mkdir(parents=True, exist_ok=True)
        Path(env_dir, "bin", "python").write_text("")  # the Python is there, pip is not
        raise subprocess.CalledProcessError(1, ["ensurepip"])

    monkeypatch.setattr(bootstrap, "_venv_works", lambda: False)
    monkeypatch.setattr(bootstrap, "PYTHON", bootstrap.VENV / "bin" / "python")
    monkeypatch.setattr(bootstrap.venv.EnvBuilder, "create", half_made)
    with pytest.raises(SystemExit, match="python3-venv"):
        bootstrap.ensure_venv("")
    assert not bootstrap.VENV.exists()  # so the rerun creates it again instead of calling it somebody else's
