"""Indexes FerretDB 1.24's SQLite tables by the `_id` expression its lookups actually use.

FerretDB's SQLite backend indexes a collection's `_id` as `_ferretdb_sjson->"_id"` but looks
documents up (find, update, delete by `_id`) with `WHERE _ferretdb_sjson->'$._id' = ?`. SQLite
does not see the two expressions as the same, so every such lookup reads and parses every row
of the table (EXPLAIN QUERY PLAN: SCAN), and the cost of each write grows with its collection.
Measured on a 1,000-document collection: a delete by `_id` took 13 ms, an update 26 ms; with an
index on the lookup's own expression, 1.6 ms and 2.5 ms, whatever the collection's size.

This process, started next to the embedded FerretDB, adds that index to every collection table
as it appears and exits with FerretDB. The index is ordinary SQLite schema: FerretDB keeps it up
to date on every write, does not list it, and drops it with its table. MongoDB (production) has
real `_id` indexes and needs none of this.

    python -m deploy.local.ferretdb_indexes DATA_DIR FERRETDB_PID
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from pathlib import Path

log = logging.getLogger("ferretdb_indexes")

LOOKUP_EXPRESSION = "_ferretdb_sjson->'$._id'"
INDEX_SUFFIX = "__id_lookup"
POLL_SECONDS = 0.5
# FerretDB's tables that hold no collection.
METADATA_TABLES = ("_ferretdb_collections",)


def tables_without_index(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT t.name FROM sqlite_master t WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite_%' "
        "AND NOT EXISTS (SELECT 1 FROM sqlite_master i WHERE i.type = 'index' AND i.name = t.name || ?)",
        (INDEX_SUFFIX,),
    )
    return [name for (name,) in rows if name not in METADATA_TABLES]


def index_database(path: Path) -> list[str]:
    """Add the lookup index to every table of one database file; returns the tables indexed."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        done = []
        for table in tables_without_index(connection):
            # UNIQUE like FerretDB's own `_id` index; IF NOT EXISTS: a table may be indexed twice
            # by two watchers (a restarted stack) without harm.
            index = f'"{table}{INDEX_SUFFIX}" ON "{table}" ({LOOKUP_EXPRESSION})'
            connection.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {index}")
            connection.commit()
            done.append(table)
        return done
    finally:
        connection.close()


def index_all(data_dir: Path) -> list[str]:
    done = []
    for path in sorted(data_dir.glob("*.sqlite")):
        try:
            done += [f"{path.stem}.{table}" for table in index_database(path)]
        except sqlite3.Error as exc:  # a file being created or locked: the next round retries
            log.debug("could not index %s: %s", path.name, exc)
    return done


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie its parent has yet to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def watch(data_dir: Path, ferretdb_pid: int) -> None:
    if sqlite3.sqlite_version_info < (3, 38):  # the `->` operator of the index expression
        too_old = "SQLite %s cannot add the index (3.38+ can); lookups by _id stay slow"
        log.warning(too_old, sqlite3.sqlite_version)
        return
    while alive(ferretdb_pid):
        for table in index_all(data_dir):
            log.info("indexed _id lookups of %s", table)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    watch(Path(sys.argv[1]), int(sys.argv[2]))
