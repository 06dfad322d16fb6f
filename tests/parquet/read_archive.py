"""Reads a vexil event archive's Parquet files with pyarrow, as an analyst would.

Usage: read_archive.py ARCHIVE_DIR

Prints one JSON document: each file's column types, every row (timestamps as integers in their
column's unit, the experiments map as an object, and the file it came from), and what reading
the whole `events/` tree as one Hive-partitioned dataset gives. The end-to-end test
(crates/vexil/tests/service/archive.rs) compares this with the events it sent.
"""

import json
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    root = pathlib.Path(sys.argv[1])
    files = {}
    rows = []
    for path in sorted(root.rglob("*.parquet")):
        table = pq.ParquetFile(path).read()
        name = path.relative_to(root).as_posix()
        files[name] = {field.name: str(field.type) for field in table.schema}
        for column in ("timestamp", "received_at"):
            index = table.schema.get_field_index(column)
            table = table.set_column(index, column, table.column(column).cast(pa.int64()))
        for row in table.to_pylist():
            row["experiments"] = dict(row["experiments"])
            row["file"] = name
            rows.append(row)
    dataset = pq.read_table(root / "events", partitioning="hive")
    print(
        json.dumps(
            {
                "files": files,
                "rows": rows,
                "dataset": {"rows": dataset.num_rows, "columns": dataset.column_names},
            }
        )
    )


if __name__ == "__main__":
    main()
