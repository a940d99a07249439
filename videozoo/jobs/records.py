"""Results files of one JSON record per line, appended as each video finishes.

A line is written whole and flushed before the next video starts, so a killed run loses at most
the line it was writing; :func:`repair_tail` drops such a cut line before more are appended (or
the next record would be glued to it and both lost).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO


def read_records(path: Path) -> list[dict]:
    """The complete lines of a predictions file (a line cut by a kill is dropped)."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def repair_tail(path: Path) -> None:
    """Keep only the whole lines of `path` when its last line was cut."""
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        good = [line for line in path.read_text(errors="replace").splitlines() if _is_json(line)]
        path.write_text("".join(line + "\n" for line in good))


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


class RecordWriter:
    """Appends records to `path`, one JSON line each, flushed at once (a context manager)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        repair_tail(self.path)
        self._file: IO[str] | None = open(self.path, "a")
        self.written = 0

    def write(self, record: dict) -> None:
        assert self._file is not None, "closed"
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()
            except OSError:
                pass  # a failed flush (a full disk): what reached the file is repaired on resume

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
