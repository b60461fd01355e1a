"""`logcount rollup` against hostile input and a hostile machine: lines whose numbers or
dates no store can hold, a store removed under a running rollup, and a day of more
distinct URLs than the store keeps (folded into "(other)", totals exact). Through the
real command, with both scanners."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import LOGCOUNT
from tests.test_rollup import CONFIG, DAYS, rollup_held_at_a_fifo


def test_the_store_removed_during_a_rollup_is_an_error(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """The SQLite file removed while the last file is read: the rollup must not write into
    the removed file and report success; one line, a non-zero exit."""
    (tmp_path / "logcount.toml").write_text(CONFIG)
    db = Path(lc_env["LOGCOUNT_DATA_DIR"]) / "logcount.sqlite3"
    with rollup_held_at_a_fifo(lc_env, tmp_path, 23) as (proc, _pipe, _expected, store):
        store.dispose()
        for name in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            name.unlink(missing_ok=True)
    _out, err = proc.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 69, err.decode()
    assert lines == [
        f"Error: the store sqlite:///{db} was removed or replaced while this command was "
        "writing it: nothing more written; run it again"
    ]
