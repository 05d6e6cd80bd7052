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
    monkeypatch.setattr(module, "MADE", venv / ".asyrp_edu_made")  # not the markers of the repository's own .venv
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


def test_an_interrupted_creation_leaves_nothing_that_blocks_the_rerun(bootstrap, monkeypatch):
    """Ctrl-C while .venv is made: removed; a half-made .venv of this script's (its marker) is made again."""
    def interrupted(self, env_dir):
        Path(env_dir, "bin").mkdir(parents=True, exist_ok=True)
        Path(env_dir, "bin", "python").write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(bootstrap, "_venv_works", lambda: False)
    monkeypatch.setattr(bootstrap, "PYTHON", bootstrap.VENV / "bin" / "python")
    monkeypatch.setattr(bootstrap.venv.EnvBuilder, "create", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bootstrap.ensure_venv("")
    assert not bootstrap.VENV.exists()
    # killed after the marker, before pip: the rerun makes it again instead of calling it somebody else's
    made = []
    bootstrap.VENV.mkdir()
    (bootstrap.VENV / "bin").mkdir()
    (bootstrap.VENV / "bin" / "python").write_text("")
    bootstrap.MADE.write_text("")
    monkeypatch.setattr(bootstrap.venv.EnvBuilder, "create", lambda self, env_dir: made.append(env_dir))
    monkeypatch.setattr(bootstrap, "_install_fingerprint", lambda: "f")
    bootstrap.ensure_venv("")
    assert made == [bootstrap.VENV] and bootstrap.installs[0] == "--default-pip"  # ensurepip, then the install


def test_a_venv_of_an_older_python_is_remade_if_ours_and_named_if_not(bootstrap, monkeypatch):
    (bootstrap.VENV / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.10.12\n")
    with pytest.raises(SystemExit, match="runs Python 3.10.*not made by this script"):
        bootstrap.ensure_venv("")
    monkeypatch.setattr(bootstrap, "STAMP", bootstrap.VENV / ".asyrp_edu_installed")
    bootstrap.STAMP.write_text("old")
    made = []
    monkeypatch.setattr(bootstrap.venv.EnvBuilder, "create", lambda self, env_dir: made.append(env_dir))
    monkeypatch.setattr(bootstrap, "_install_fingerprint", lambda: "f")
    bootstrap.ensure_venv("")
    assert made == [bootstrap.VENV]


def test_the_commands_run_through_the_venvs_python(bootstrap, monkeypatch):
    """A moved clone keeps bin/asyrp-edu pointing at the old folder: the demo goes through `python -m`; test paths
    given after `test` narrow the run (pyproject's testpaths otherwise)."""
    runs = []
    monkeypatch.setattr(bootstrap, "ensure_venv", lambda extras: None)
    monkeypatch.setattr(bootstrap.subprocess, "run", lambda cmd, **k: runs.append(cmd) or type("R", (), {"returncode": 0}))
    bootstrap.main(["demo"])
    bootstrap.main(["test", "tests/test_toy.py"])
    assert runs[0][1:4] == ["-m", "asyrp_edu.cli", "demo"]
    assert "tests/test_toy.py" in runs[1] and "tests" not in runs[1] and "notebooks" not in runs[1]


def test_a_moved_venv_installs_again(bootstrap, monkeypatch, tmp_path):
    """The editable install records the clone's folder, so the same .venv elsewhere must be installed into again."""
    here = bootstrap._install_fingerprint()
    moved = tmp_path / "moved" / ".venv"
    moved.mkdir(parents=True)
    (moved / "pyvenv.cfg").write_bytes((bootstrap.VENV / "pyvenv.cfg").read_bytes())
    monkeypatch.setattr(bootstrap, "VENV", moved)
    assert bootstrap._install_fingerprint() != here
