"""The text of dataset list files: decoding, and the readings of one `path label` line.

A list file is UTF-8 (a byte-order mark is allowed, line ends may be LF or CRLF). Anything else
is refused with the byte offset of the first byte that is not UTF-8, so a Latin-1 or UTF-16 file
is never read as wrong names.

A `path label` line whose path or label holds spaces ("my videos/a b.mp4 air drumming") can be
cut at any of its gaps; :func:`line_readings` lists every cut, and the dataset reader keeps the
one whose path exists and whose label is known. A tab between path and label leaves one reading.
"""

from __future__ import annotations

import re
from pathlib import Path

_GAP = re.compile(r"\s+")
# Header names of a delimited list: the path column, and the label column.
PATH_COLUMNS = ("path", "video", "file", "filename", "video_path")
LABEL_COLUMNS = ("label", "class", "class_name", "label_name", "category")


class ListTextError(ValueError):
    """The file is not text this reader accepts; the message names the file and the reason."""


def read_list_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 (with or without a byte-order mark)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ListTextError(f"{path}: a UTF-16 text file; save the list as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ListTextError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start} is not valid "
            "UTF-8); save the list as UTF-8"
        ) from None


def is_header(fields: list[str]) -> bool:
    """Whether the fields of a first line name columns (`path<TAB>label`, `video,label`)."""
    names = [f.strip().lower() for f in fields]
    return bool(names) and names[0] in PATH_COLUMNS and all(n in LABEL_COLUMNS for n in names[1:])


def line_readings(text: str) -> list[tuple[str, str | None]]:
    """Every (path, label) a stripped list line can mean; label None: the whole line is a path.

    Raises ValueError for a tab-separated line with more than two fields.
    """
    if "\t" in text:
        fields = [f.strip() for f in text.split("\t") if f.strip()]
        if len(fields) > 2:
            raise ValueError(f"{len(fields)} tab-separated fields; expected PATH<TAB>LABEL")
        return [(fields[0], fields[1] if len(fields) == 2 else None)]
    readings: list[tuple[str, str | None]] = [(text[: m.start()], text[m.end() :]) for m in _GAP.finditer(text)]
    readings.append((text, None))
    return readings
