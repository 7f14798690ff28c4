"""A child process that reads one query of a SQLite file through ADBC and writes its rows to stdout as an Arrow IPC
stream; the export reads that stream.

Why a child: the ADBC SQLite driver carries its own copy of the SQLite library. Two copies in one process do not
share SQLite's per-process table of POSIX locks, so closing the ADBC connection drops the locks that the process's
sqlite3 connections hold on the same file, and later connections fail with "disk I/O error" or worse (SQLite's "How
to corrupt", 2.2.1). The demo loader writes through ADBC in a child process for the same reason.

Request on stdin, one JSON line: ``{"path": ..., "sql": ..., "batch_rows": ..., "pragmas": [...]}``. Imports only
pyarrow and the ADBC packages, so it starts in a fraction of a second.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import adbc_driver_manager
    import adbc_driver_sqlite
    import pyarrow as pa

    request = json.loads(sys.stdin.readline())
    database = adbc_driver_sqlite.connect(request["path"])
    connection = adbc_driver_manager.AdbcConnection(database)  # autocommit: each statement its own transaction
    statement = adbc_driver_manager.AdbcStatement(connection)
    try:
        for pragma in request["pragmas"]:
            statement.set_sql_query(f"PRAGMA {pragma}")
            statement.execute_update()
        statement.set_options(**{"adbc.sqlite.query.batch_rows": str(request["batch_rows"])})
        statement.set_sql_query(request["sql"])
        stream, _ = statement.execute_query()
        reader = pa.RecordBatchReader._import_from_c(stream.address)
        try:
            with pa.ipc.new_stream(sys.stdout.buffer, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
        finally:
            reader.close()
    finally:
        statement.close()
        connection.close()
        database.close()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the export stopped reading (a client went away): nothing to report
        sys.exit(0)
