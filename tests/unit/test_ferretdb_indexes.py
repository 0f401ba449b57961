"""The local stack's FerretDB indexer, on plain SQLite files shaped like FerretDB's."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from deploy.local.ferretdb_indexes import INDEX_SUFFIX, alive, index_all


def ferretdb_file(path, *tables: str) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE _ferretdb_collections (name TEXT, table_name TEXT, settings TEXT)")
        for table in tables:
            db.execute(f'CREATE TABLE "{table}" (_ferretdb_sjson TEXT NOT NULL) STRICT')
            db.execute(f'INSERT INTO "{table}" VALUES (?)', ('{"_id": "a", "n": 1}',))
        db.commit()


def indexes(path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_every_collection_table_gets_the_lookup_index_once(tmp_path):
    ferretdb_file(tmp_path / "gl_points.sqlite", "accounts_1a2b", "ledger_3c4d")
    (tmp_path / "state.json").write_text("{}")  # not a database: left alone

    done = index_all(tmp_path)

    assert sorted(done) == ["gl_points.accounts_1a2b", "gl_points.ledger_3c4d"]
    assert indexes(tmp_path / "gl_points.sqlite") == {
        f"accounts_1a2b{INDEX_SUFFIX}",
        f"ledger_3c4d{INDEX_SUFFIX}",
    }
    assert index_all(tmp_path) == []  # nothing new: nothing done
    with closing(sqlite3.connect(tmp_path / "gl_points.sqlite")) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT 1 FROM accounts_1a2b WHERE _ferretdb_sjson->'$._id' = ?", ('"a"',)
        ).fetchall()
    assert f"accounts_1a2b{INDEX_SUFFIX}" in str(plan)


def test_the_indexer_stops_with_ferretdb_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    assert alive(child.pid)
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 10
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped by this test
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not alive(child.pid)
    child.wait()
    assert not alive(child.pid)
