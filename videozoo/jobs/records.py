"""Results files of one JSON record per line, appended as each video finishes."""
from __future__ import annotations

import json
from pathlib import Path


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
