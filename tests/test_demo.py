"""`make demo`: installs logcount without the test extras, and shows the same counts however
often it runs (its data directory is made afresh), under a header saying what they mean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, logcount_env, need

VENV = Path(sys.prefix)  # the venv running the tests: logcount is installed in it


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    need(shutil.which("make") is not None, "make is not installed")
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_demo_installs_no_test_extras(tmp_path: Path) -> None:
    done = make("-n", "demo", f"VENV={tmp_path / 'venv'}")
    assert done.returncode == 0, done.stderr
    installs = [cmd for cmd in done.stdout.splitlines() if "pip install" in cmd]
    assert installs[-1].endswith("pip install -q -e .")
    assert "[test]" not in done.stdout


def test_demo_twice_gives_the_same_output(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    env.update(logcount_env())
    # -o: the installed venv is taken as it is (nothing installed by the test)
    args = ("-o", f"{VENV}/.runtime", "demo", f"VENV={VENV}", f"DEMO_DIR={demo}")
    try:
        first = make(*args, env=env)
        assert first.returncode == 0, first.stderr
        second = make(*args, env=env)
        assert second.returncode == 0, second.stderr
    finally:
        subprocess.run(
            [str(VENV / "bin" / "logcount"), "embedded", "stop"],
            env={**env, "LOGCOUNT_DATA_DIR": str(demo)},
            capture_output=True,
            check=False,
        )
    assert second.stdout == first.stdout
    out = first.stdout
    assert "bots (crawlers, known by their user agent" in out  # the header says what bots are
    assert "share      a row's part of the window's hits" in out
    # the sample's counts, once (a second run used to double them)
    assert "hits 469  visitors 185  bytes 329.2 MiB  bots 426  malformed 0\n" in out
    assert "\n1 file(s): contrib/sample-access.log\nlines 2,000  " in out
