"""Dataset specs: the lists of labelled videos that evaluation, training and feature extraction read.

A spec is one of:
- a Kinetics-style CSV (`label,youtube_id,time_start,time_end,split`), videos named
  `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4` under `root` (default: the CSV's folder);
- a folder with one sub-folder per class, holding video files or folders of extracted frames;
- a text file of `path label` lines (label: a class name or an index; paths relative to the
  file's folder), as the I3D seed's lists are.
Items are (path, label index or None). Label names are mapped to the model's class list.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv", ".3gp")


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

    def __len__(self) -> int:
        return len(self.items)


class DatasetSpecError(ValueError):
    """The dataset spec cannot be read; the message names the file or folder and the reason."""


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in path.iterdir())


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
        shown = ", ".join(sorted(unknown)[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DatasetSpecError(
            f"{source}: {len(unknown)} label(s) not among the model's {len(classes)} classes: {shown}"
        )
    return out, classes


def _normal(name: str) -> str:
    return name.strip().strip('"').replace("_", " ").lower()


def load_video_list(spec: str | os.PathLike, *, classes: list[str] | None = None, root: str | None = None) -> VideoList:
    """Read a dataset spec (see the module docstring) into a VideoList."""
    path = Path(spec)
    if not path.exists():
        raise DatasetSpecError(f"{path}: no such dataset file or folder")
    if path.is_dir():
        paths, names = _read_class_folders(path)
    elif path.suffix.lower() == ".csv":
        paths, names = _read_kinetics_csv(path, Path(root) if root else path.parent)
    else:
        paths, names = _read_path_label_lines(path, Path(root) if root else path.parent)
    if not paths:
        raise DatasetSpecError(f"{path}: the dataset holds no videos")
    labels, classes = _map_labels(names, classes, str(path))
    items = [VideoItem(p, lab, n) for p, lab, n in zip(paths, labels, names, strict=True)]
    return VideoList(items, list(classes), str(path))


def _read_class_folders(root: Path) -> tuple[list[str], list[str | None]]:
    paths, names = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for entry in sorted(class_dir.iterdir()):
            if entry.suffix.lower() in VIDEO_EXTENSIONS or _is_frame_folder(entry):
                paths.append(str(entry))
                names.append(class_dir.name)
    return paths, names


def _read_kinetics_csv(path: Path, root: Path) -> tuple[list[str], list[str | None]]:
    paths, names = [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"youtube_id", "time_start", "time_end"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DatasetSpecError(
                f"{path}: a Kinetics CSV needs the columns label,youtube_id,time_start,time_end,split"
            )
        for line, row in enumerate(reader, start=2):
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError:
                raise DatasetSpecError(f"{path}:{line}: time_start/time_end are not numbers") from None
            stem = f"{row['youtube_id']}_{start:06d}_{end:06d}"
            label = row.get("label") or None
            # Videos are found flat under root or in a folder per class, with any common extension.
            candidates = [root / f"{stem}.mp4"]
            if label:
                candidates += [root / label / f"{stem}.mp4", root / label.replace(" ", "_") / f"{stem}.mp4"]
            found = next((c for c in candidates if c.exists()), None)
            if found is None:
                other_extensions = (c.with_suffix(ext) for c in candidates for ext in VIDEO_EXTENSIONS)
                found = next((c for c in other_extensions if c.exists()), candidates[0])
            paths.append(str(found))
            names.append(label)
    return paths, names


def _read_path_label_lines(path: Path, root: Path) -> tuple[list[str], list[str | None]]:
    paths, names = [], []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        rel, label = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], None)
        p = Path(rel)
        paths.append(str(p if p.is_absolute() else root / p))
        names.append(label)
    return paths, names
