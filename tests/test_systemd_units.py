"""contrib/systemd: the units for `serve` and `tail` load in systemd (systemd-analyze
verify, pointed at this checkout's logcount), run as a dedicated user and are hardened
(systemd-analyze security's exposure stays low)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

UNITS = ROOT / "contrib" / "systemd"
# What each unit must say, whatever else it says
REQUIRED = (
    "User=logcount",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ReadWritePaths=/var/lib/logcount",
    "ProtectHome=yes",
    "CapabilityBoundingSet=",
)


def installed_copy(tmp_path: Path, name: str, instance: str = "") -> Path:
    """The unit with ExecStart at this checkout's logcount (verify wants it to exist)."""
    logcount = Path(sys.executable).parent / "logcount"
    text = (UNITS / name).read_text().replace("/usr/local/bin/logcount", str(logcount))
    target = tmp_path / (name.replace("@", f"@{instance}") if instance else name)
    target.write_text(text)
    return target


@pytest.mark.parametrize("name", ["logcount-serve.service", "logcount-tail@.service"])
def test_the_unit_is_hardened(name: str) -> None:
    lines = (UNITS / name).read_text().splitlines()
    for setting in REQUIRED:
        assert setting in lines, setting
    assert any(re.match(r"ExecStart=/usr/local/bin/logcount (serve|tail) ", ln) for ln in lines)


@pytest.mark.parametrize(
    ("name", "instance"),
    [("logcount-serve.service", ""), ("logcount-tail@.service", "var-log-nginx-access.log")],
)
def test_systemd_loads_it_and_rates_it_safe(tmp_path: Path, name: str, instance: str) -> None:
    need(shutil.which("systemd-analyze") is not None, "no systemd-analyze (Debian: systemd)")
    unit = installed_copy(tmp_path, name, instance)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for .*: (\d+\.\d+)", security.stdout)
    assert exposure is not None, security.stdout + security.stderr
    assert float(exposure.group(1)) <= 2.0
