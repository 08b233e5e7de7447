"""`flushsweep store check` on a store nobody may write (a snapshot, a read-only mount): it reads,
reports, and names what would need a write, without attempting one.

As root (who ignores permission bits) the store is a read-only bind mount in a private mount
namespace (``unshare -m``); as any other user, a tree without write permission. With CI=true
the test fails rather than skips when neither is possible.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from storage import open_store
from storage._location import parse_db_url
from sweep_fixtures import REPO, cli_env

#: Runs "$@" with the directory "$1" remounted read-only, in a mount namespace of its own.
_RO_MOUNT = 'dir="$1"; shift; mount --bind "$dir" "$dir" && mount -o remount,ro,bind "$dir" && exec "$@"'


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"cannot make a read-only store here: {reason} (CI=true: this test must run)")
    pytest.skip(f"cannot make a read-only store here: {reason}")


@contextlib.contextmanager
def _readonly(store_dir: Path) -> Iterator[list[str]]:
    """The command prefix that runs a process on a read-only ``store_dir``."""
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            _unavailable("no unshare(1)")
        probe = subprocess.run(["unshare", "-m", "sh", "-c", _RO_MOUNT, "sh", str(store_dir), "sh", "-c",
                                f"! touch {store_dir}/.probe 2>/dev/null"], capture_output=True, text=True)
        if probe.returncode != 0:
            _unavailable(f"unshare -m / mount -o ro,bind failed: {probe.stderr.strip()[:200]}")
        yield ["unshare", "-m", "sh", "-c", _RO_MOUNT, "sh", str(store_dir)]
        return
    modes = {p: p.stat().st_mode for p in [store_dir, *store_dir.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield []
    finally:
        for path, mode in sorted(modes.items(), key=lambda kv: len(kv[0].parts)):
            path.chmod(mode)


def _check(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "sweep", "store", "check", *args], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=120)


def _tree(store_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(store_dir)): p.stat().st_size for p in store_dir.rglob("*")}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request, store_dir, result_rows):
    """(store_dir, --store/--db arguments): metadata in the store's own SQLite file, or in PostgreSQL."""
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with open_store(store_dir, db) as store:
        result_rows.seed(store)
    (store_dir / ".flushsweep.lock").unlink()  # a check that needed it would have to create it
    return store_dir, ["--store", str(store_dir), *(["--db", db] if db else [])]


def test_check_reads_a_read_only_store_and_writes_nothing(seeded):
    store_dir, args = seeded
    before = _tree(store_dir)
    with _readonly(store_dir) as prefix:
        done = _check(prefix, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: 2 result file(s), 16 row(s) match the manifest"
    assert _tree(store_dir) == before  # no lock file, journal, WAL or probe file appeared


def test_check_reports_damage_in_a_read_only_store(seeded):
    store_dir, args = seeded
    victim = sorted((store_dir / "results").rglob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    with _readonly(store_dir) as prefix:
        done = _check(prefix, *args)
    assert done.returncode == 1, done.stderr
    assert f"result file {victim.relative_to(store_dir)} is damaged" in done.stdout
    assert "flushsweep store check --repair" in done.stdout


def test_what_would_need_a_write_is_one_line_naming_it(seeded):
    store_dir, args = seeded
    with _readonly(store_dir) as prefix:
        repair = _check(prefix, "--repair", *args)
    assert repair.returncode == 2 and len(repair.stderr.strip().splitlines()) == 1, repair.stderr
    assert f"store directory {store_dir} is not writable" in repair.stderr

    db = args[3] if len(args) > 2 else f"sqlite:///{store_dir / 'meta.sqlite'}"
    engine = sa.create_engine(parse_db_url(db), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # an older store: upgrading it is a write
        conn.execute(sa.text("UPDATE fs_alembic_version SET version_num = '0003'"))
    engine.dispose()
    with _readonly(store_dir) as prefix:
        old = _check(prefix, *args)
    assert old.returncode == 2 and len(old.stderr.strip().splitlines()) == 1, old.stderr
    assert "older schema" in old.stderr and "opened read-only" in old.stderr and "where the store is writable" in old.stderr
