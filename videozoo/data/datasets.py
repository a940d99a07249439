"""Dataset specs: the lists of labelled videos that evaluation, training and feature extraction read.

A spec is one of:
- a Kinetics-style CSV (`label,youtube_id,time_start,time_end,split`), videos named
  `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4` under `root` (default: the CSV's folder);
- a CSV with a header naming a path column (`path`, `video`, `file`) and optionally a label
  column (`label`, `class`); quoted fields may hold commas and spaces;
- a folder with one sub-folder per class, holding video files or folders of extracted frames;
- a text file of `path label` lines (label: a class name or an index; paths relative to `root`,
  default the file's folder), as the I3D seed's lists are. Paths and labels may hold spaces: a
  line is cut where the path exists and the label is known (to the model, or to the list's other
  lines); a line that can be read two ways, or none, is an error naming its number. A tab between
  path and label leaves one reading.
Items are (path, label index or None). Label names are mapped to the model's class list.

Rows of a CSV that cannot be used (too few fields, times that are not finite numbers) are left
out with a warning naming each row; the other rows are kept. Everything else that is wrong with a
spec is a :class:`DatasetSpecError` naming the file (and line) and the reason.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from videozoo.data.list_text import LABEL_COLUMNS, PATH_COLUMNS, ListTextError, is_header, line_readings, read_list_text

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp")
_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_SHOWN = 10  # problems listed in one message


@dataclass(frozen=True)
class VideoItem:
    path: str
    label: int | None
    label_name: str | None = None


@dataclass
class VideoList:
    items: list[VideoItem]
    classes: list[str]
    source: str
    # Rows left out, as "FILE:LINE: reason" (already warned about).
    skipped_rows: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


class DatasetSpecError(ValueError):
    """The dataset spec cannot be read; the message names the file or folder and the reason."""


class DatasetRowWarning(UserWarning):
    """Rows of a dataset file were left out; the message names each and why."""


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in path.iterdir())


def _normal(name: str) -> str:
    return name.strip().strip('"').replace("_", " ").lower()


class _Labels:
    """Which label names a list may use: the given classes, or (none given) those the list uses."""

    def __init__(self, classes: list[str] | None):
        self.fixed = classes is not None
        self.classes = list(classes or [])
        self._normal = {_normal(c) for c in self.classes}

    def knows(self, name: str) -> bool:
        if name in self.classes or _normal(name) in self._normal:
            return True
        return self.fixed and name.isdigit() and int(name) < len(self.classes)

    def learn(self, name: str | None) -> None:
        if not self.fixed and name is not None and not self.knows(name):
            self.classes.append(name)
            self._normal.add(_normal(name))


def _map_labels(names: list[str | None], classes: list[str] | None, source: str) -> tuple[list[int | None], list[str]]:
    """Label names to indices of `classes` (or of the sorted set of names when no list is given)."""
    if classes is None:
        classes = sorted({n for n in names if n is not None})
    index = {c: i for i, c in enumerate(classes)}
    # Kinetics CSVs and class lists disagree on quoting and underscores; compare a normal form too.
    normal = {_normal(c): i for i, c in enumerate(classes)}
    out: list[int | None] = []
    unknown: set[str] = set()
    for n in names:
        if n is None:
            out.append(None)
        elif n in index:
            out.append(index[n])
        elif _normal(n) in normal:
            out.append(normal[_normal(n)])
        elif n.isdigit() and int(n) < len(classes):
            out.append(int(n))
        else:
            unknown.add(n)
    if unknown:
        shown = ", ".join(sorted(unknown)[:_SHOWN]) + (" ..." if len(unknown) > _SHOWN else "")
        raise DatasetSpecError(
            f"{source}: {len(unknown)} label(s) not among the model's {len(classes)} classes: {shown}"
        )
    return out, classes


def _problems(path: Path, what: str, problems: list[str]) -> str:
    shown = "\n  ".join(problems[:_SHOWN]) + ("\n  ..." if len(problems) > _SHOWN else "")
    return f"{path}: {len(problems)} {what}:\n  {shown}"


def load_video_list(spec: str | os.PathLike, *, classes: list[str] | None = None, root: str | None = None) -> VideoList:
    """Read a dataset spec (see the module docstring) into a VideoList."""
    path = Path(spec)
    if not path.exists():
        raise DatasetSpecError(f"{path}: no such dataset file or folder")
    skipped: list[str] = []
    base = Path(root) if root else (path if path.is_dir() else path.parent)
    if root and not base.is_dir():
        raise DatasetSpecError(f"{base}: the data root is not a folder")
    if path.is_dir():
        paths, names = _read_class_folders(path)
    else:
        try:
            text = read_list_text(path)
        except ListTextError as e:
            raise DatasetSpecError(str(e)) from None
        if path.suffix.lower() == ".csv":
            paths, names = _read_csv(path, text, base, skipped)
        else:
            paths, names = _read_path_label_lines(path, text, base, classes)
    if skipped:
        warnings.warn(_problems(path, "row(s) left out", skipped), DatasetRowWarning, stacklevel=2)
    if not paths:
        why = f"; {_problems(path, 'row(s) left out', skipped)}" if skipped else ""
        raise DatasetSpecError(f"{path}: the dataset holds no videos{why}")
    labels, classes = _map_labels(names, classes, str(path))
    items = [VideoItem(p, lab, n) for p, lab, n in zip(paths, labels, names, strict=True)]
    return VideoList(items, list(classes), str(path), [f"{path}: {s}" for s in skipped])


def _read_class_folders(root: Path) -> tuple[list[str], list[str | None]]:
    paths, names = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for entry in sorted(class_dir.iterdir()):
            if entry.suffix.lower() in VIDEO_EXTENSIONS or _is_frame_folder(entry):
                paths.append(str(entry))
                names.append(class_dir.name)
    return paths, names


# -- CSV files -------------------------------------------------------------------------------------


def _read_csv(path: Path, text: str, root: Path, skipped: list[str]) -> tuple[list[str], list[str | None]]:
    rows = list(enumerate(csv.reader(io.StringIO(text, newline="")), start=1))
    rows = [(n, r) for n, r in rows if any(f.strip() for f in r)]  # blank lines
    if not rows:
        raise DatasetSpecError(f"{path}: the CSV file is empty")
    header = [h.strip().lower() for h in rows[0][1]]
    if "youtube_id" in header:
        return _read_kinetics_rows(path, header, rows[1:], root, skipped)
    if is_header(header):
        return _read_path_label_rows(header, rows[1:], root, skipped)
    raise DatasetSpecError(
        f"{path}: the first line is not a header this reader knows: a Kinetics CSV has the columns "
        f"{','.join(_KINETICS_COLUMNS)}; a list CSV has a path column ({'/'.join(PATH_COLUMNS)}) and "
        f"optionally a label column ({'/'.join(LABEL_COLUMNS)})"
    )


def _field(row: list[str], header: list[str], name: str) -> str | None:
    i = header.index(name) if name in header else None
    if i is None or i >= len(row):
        return None
    return row[i].strip()


def _time(value: str | None, name: str) -> float:
    if value is None or value == "":
        raise ValueError(f"no {name}")
    try:
        t = float(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"{name} {value!r} is not a finite time >= 0")
    return t


def _read_kinetics_rows(
    path: Path, header: list[str], rows: list, root: Path, skipped: list[str]
) -> tuple[list[str], list[str | None]]:
    missing = [c for c in ("youtube_id", "time_start", "time_end") if c not in header]
    if missing:
        raise DatasetSpecError(
            f"{path}: a Kinetics CSV needs the columns {','.join(_KINETICS_COLUMNS)} (no {', '.join(missing)})"
        )
    paths, names = [], []
    for line, row in rows:
        try:
            youtube_id = _field(row, header, "youtube_id")
            if not youtube_id:
                raise ValueError("no youtube_id")
            start, end = (
                _time(_field(row, header, "time_start"), "time_start"),
                _time(_field(row, header, "time_end"), "time_end"),
            )
            if end <= start:
                raise ValueError(f"time_end {end:g} is not after time_start {start:g}")
        except ValueError as e:
            short = f" (a row of {len(row)} of the header's {len(header)} fields)" if len(row) < len(header) else ""
            skipped.append(f"line {line}: {e}{short}")
            continue
        stem = f"{youtube_id}_{int(start):06d}_{int(end):06d}"
        label = _field(row, header, "label") or None
        # Videos are found flat under root or in a folder per class, with any common extension.
        candidates = [root / f"{stem}.mp4"]
        if label:
            candidates += [root / label / f"{stem}.mp4", root / label.replace(" ", "_") / f"{stem}.mp4"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            found = next(
                (c.with_suffix(ext) for c in candidates for ext in VIDEO_EXTENSIONS if c.with_suffix(ext).exists()),
                candidates[0],
            )
        paths.append(str(found))
        names.append(label)
    return paths, names


def _read_path_label_rows(
    header: list[str], rows: list, root: Path, skipped: list[str]
) -> tuple[list[str], list[str | None]]:
    label_column = next((h for h in header[1:] if h in LABEL_COLUMNS), None)
    paths, names = [], []
    for line, row in rows:
        rel = _field(row, header, header[0])
        if not rel:
            skipped.append(f"line {line}: no {header[0]}")
            continue
        p = Path(rel)
        paths.append(str(p if p.is_absolute() else root / p))
        names.append(_field(row, header, label_column) or None if label_column else None)
    return paths, names


# -- `path label` text lists -----------------------------------------------------------------------


def _read_path_label_lines(
    path: Path, text: str, root: Path, classes: list[str] | None
) -> tuple[list[str], list[str | None]]:
    labels = _Labels(classes)
    lines = [(n, s.strip()) for n, s in enumerate(text.splitlines(), start=1)]
    lines = [(n, s) for n, s in lines if s and not s.startswith("#")]
    if lines and "\t" in lines[0][1] and is_header(lines[0][1].split("\t")):
        lines = lines[1:]
    chosen: dict[int, tuple[str, str | None]] = {}
    errors: dict[int, str] = {}
    readings: dict[int, list[tuple[str, str | None]]] = {}
    for n, s in lines:
        try:
            readings[n] = [(_under(root, p), lab) for p, lab in line_readings(s)]
        except ValueError as e:
            errors[n] = f"line {n}: {e}"
    # Without a class list the labels are the list's own: lines with one possible reading are read
    # first, and the labels they use decide between the readings of the other lines.
    for final in (False, True) if not labels.fixed else (True,):
        for n, _ in lines:
            if n in chosen or n in errors:
                continue
            pick, why = _choose(readings[n], labels, final)
            if pick is not None:
                chosen[n] = pick
                labels.learn(pick[1])
            elif why is not None:
                errors[n] = f"line {n}: {why}"
    if errors:
        raise DatasetSpecError(_problems(path, "line(s) cannot be read", [errors[n] for n in sorted(errors)]))
    return [chosen[n][0] for n, _ in lines], [chosen[n][1] for n, _ in lines]


def _under(root: Path, rel: str) -> str:
    p = Path(rel)
    return str(p if p.is_absolute() else root / p)


def _choose(
    options: list[tuple[str, str | None]], labels: _Labels, final: bool
) -> tuple[tuple[str, str | None] | None, str | None]:
    """The one reading of a line, or (None, why it cannot be read), or (None, None): decide later."""
    exist = [o for o in options if Path(o[0]).exists()]
    labelled = [o for o in options if o[1] is not None]
    if not labels.fixed and not final:
        # The labels are being learnt: a line that exists one way only, or has one gap, is read so.
        if len(exist) == 1:
            return exist[0], None
        return (labelled[0], None) if not exist and len(labelled) == 1 else (None, None)
    fits = [o for o in exist if o[1] is None or labels.knows(o[1])]
    if len(fits) == 1:
        return fits[0], None
    if len(fits) > 1:
        shown = " or ".join(f"{Path(p).name!r} + {lab!r}" for p, lab in fits)
        return None, f"ambiguous: reads as {shown}; put a tab between path and label"
    # No video exists under a reading with a known label: a reading with a known label is kept
    # (the job reports the missing video), as long as it is the only one.
    known = [o for o in labelled if labels.knows(o[1])]
    if len(known) == 1:
        return known[0], None
    if len(known) > 1:
        shown = " or ".join(repr(lab) for _, lab in known)
        return None, f"ambiguous: no video exists, and the label could be {shown}; put a tab between path and label"
    if len(labelled) == 1:
        if not labels.fixed:
            return labelled[0], None
        return None, f"label {labelled[0][1]!r} is not among the {len(labels.classes)} classes"
    if not labelled:
        return options[0], None  # an unlabelled path; the job reports it if it is missing
    return None, "no reading names an existing video and a known label; put a tab between path and label"
