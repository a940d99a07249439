"""Video embeddings and text search: one normalised vector per window of each video, in an index folder.

    summary = videozoo.embed(["a.mp4", "clips/"], model="xclip_b16_zero_shot", out="index")
    hits = videozoo.search("index", "a person falls", top=5)   # [{"video", "start", "end", "score"}, ...]

The videos are read as the timeline reads them (windows of the model's clip every half clip by
default, one sequential pass per video, the same engine), and each window's video embedding (the mean
of its views', L2-normalised) becomes one row. The folder holds:

- ``vectors.npy``: (N, E) float32, one unit vector per window, videos in order;
- ``rows.json``: what the index was made with (model, weights and their sha256, window, stride,
  precision, videozoo version), ``rows`` (video, start/end seconds and frames of each vector's
  window), ``videos`` (each video's row range, or its error) and ``texts`` (labels embedded with it);
- ``texts.npy``: (M, E) the normalised text embeddings of the labels given with ``labels``;
- ``manifest.json``, ``index.jsonl`` and ``parts/``: the run's state, so that ``resume`` skips the
  videos already embedded with the same settings.

Search ranks every row by its cosine similarity to the text's embedding (exact, one matrix-vector
product in NumPy). X-CLIP's classification logits adapt each text to the clip (the prompt generator
reads the clip's patch tokens); an index keeps one vector per clip, so search compares the text's own
embedding with the clip's: the order of a clip's labels can differ from ``classify``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videozoo.data.datasets import VIDEO_EXTENSIONS
from videozoo.engine import Engine
from videozoo.jobs.classify import DEFAULT_MODEL, DEFAULT_TEMPLATE, check_template, parse_labels, video_text_engine
from videozoo.jobs.records import RecordWriter, read_records, repair_tail
from videozoo.jobs.rundir import (
    RunError,
    RunLock,
    check_resume,
    data_sha256,
    file_sha256,
    identity,
    prepare_out,
    write_manifest,
    write_text_atomic,
)
from videozoo.version import __version__

INDEX_LAYOUT = 1


def find_videos(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Video files from files and folders (a folder: its video files at any depth, sorted by path)."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise ValueError("no videos given: name video files or folders of videos")
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise ValueError(f"{path}: a folder without video files ({', '.join(VIDEO_EXTENSIONS)})")
            out += found
        elif path.is_file():
            out.append(str(path))
        else:
            raise FileNotFoundError(f"{path}: no such video file or folder")
    repeated = sorted({p for p in out if out.count(p) > 1})
    if repeated:
        raise ValueError(f"videos given more than once: {', '.join(repeated)}")
    return out


def weights_identity(model: str, weights: str | os.PathLike | None) -> str | None:
    """The sha256 of the weights a model is made from: a file's, or a transformers folder's files' together."""
    if weights is not None and Path(weights).is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in Path(weights).iterdir() if p.is_file() and not p.name.startswith(".")):
            h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
        return h.hexdigest()
    from videozoo.jobs.rundir import weights_sha256

    return weights_sha256(model, weights)


def embed(
    videos: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    weights: str | os.PathLike | None = "default",
    window: float | None = None,
    stride: float | None = None,
    labels: str | Sequence[str] | None = None,
    template: str = DEFAULT_TEMPLATE,
    views: str = "1x1",
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    resume: bool = False,
    wait: bool = False,
    log=None,
) -> dict[str, Any]:
    """Embed every window of ``videos`` (files or folders) into the index folder ``out``.

    ``labels`` (a,b,c or a list, each put into ``template``): texts embedded into ``texts.npy``.
    ``resume``: keep the videos already embedded in ``out`` with the same settings (else ``out`` is
    started afresh). Returns ``{"videos", "failed", "rows", "dim", "out"}``.
    """
    from videozoo.jobs.timeline import window_plan

    paths = find_videos(videos)
    texts = parse_labels(labels) if labels is not None else []
    check_template(template)
    if resume and weights is None:
        raise ValueError("--resume with random weights (--weights none): each run draws other weights")
    folder = prepare_out(out)
    with RunLock(folder, wait=wait):
        engine = video_text_engine(
            model, weights=weights, views=views, device=device, precision=precision, batch_size=batch_size
        )
        plan = window_plan(engine, window, stride)
        ident = identity(
            model=model,
            weights=None,  # recorded below: a transformers folder is hashed file by file
            data_sha=data_sha256(None, videos=paths),
            weights_files=weights_identity(model, weights),
            window=plan.window,
            stride=plan.stride,
            views=str(engine.plan),
            precision=engine.precision.name,
        )
        index_path, parts = folder / "index.jsonl", folder / "parts"
        if resume and index_path.exists():
            check_resume(folder, ident, job="embed")
        else:
            index_path.unlink(missing_ok=True)
            for p in parts.glob("*.npy"):
                p.unlink()
            write_manifest(folder, ident, job="embed", about={"weights": _shown(weights), "videos": len(paths)})
        parts.mkdir(exist_ok=True)
        repair_tail(index_path)
        done = {
            r["index"] for r in read_records(index_path) if r.get("error") or (parts / f"{r['index']:07d}.npy").exists()
        }
        todo = [i for i in range(len(paths)) if i not in done]
        if log is not None and done:
            log(f"{len(done)} of {len(paths)} videos already embedded in {folder}: skipped")
        with RecordWriter(index_path) as index:
            for i in todo:
                rec = _embed_video(engine, paths[i], i, parts, window=plan.window, stride=plan.stride, threads=threads)
                if log is not None:
                    what = rec["error"] if rec.get("error") else f"{len(rec['windows'])} windows"
                    log(f"{paths[i]}: {what}")
                try:
                    index.write(rec)
                except OSError as e:
                    raise RunError(
                        f"{folder}: cannot write ({e.strerror or e}); the videos embedded so far are kept: "
                        "free space and continue with --resume"
                    ) from e
        text_vectors = _text_vectors(engine, texts, template)
        return _gather(folder, paths, engine, ident, weights, plan, texts, template, text_vectors)


def _shown(weights: str | os.PathLike | None) -> str | None:
    return None if weights is None else os.fspath(weights)


def _embed_video(
    engine: Engine, path: str, i: int, parts: Path, *, window: float, stride: float, threads: int | None
) -> dict[str, Any]:
    from videozoo.io import VideoDecodeError
    from videozoo.jobs.timeline import TimelineRun

    rec: dict[str, Any] = {"index": i, "video": path, "error": None}
    try:
        with TimelineRun(path, engine=engine, window=window, stride=stride, threads=threads, output="features") as run:
            windows = list(run)
            error = run.error
    except VideoDecodeError as e:
        return {**rec, "error": str(e)}
    if error is not None or not windows:
        # All or nothing per video, as in features: a damaged video is reported, not half indexed.
        return {**rec, "error": error or f"{path}: no frame decoded"}
    vectors = np.stack([w.scores for w in windows]).astype(np.float32)  # (W, E): each the mean of its views
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    tmp = parts / f".{i:07d}.tmp.npy"
    try:
        np.save(tmp, vectors)
        os.replace(tmp, parts / f"{i:07d}.npy")
    finally:
        tmp.unlink(missing_ok=True)
    rec["windows"] = [
        {"start": round(w.start, 6), "end": round(w.end, 6), "start_frame": w.start_frame, "end_frame": w.end_frame}
        for w in windows
    ]
    return rec


def _text_vectors(engine: Engine, texts: list[str], template: str) -> np.ndarray:
    if not texts:
        return np.zeros((0, 0), np.float32)
    return embed_texts(engine.model, [template.format(t) for t in texts])


def embed_texts(model: Any, prompts: Sequence[str]) -> np.ndarray:
    """(M, E) float32 unit vectors: the text embeddings of ``prompts`` (before X-CLIP's video prompts)."""
    import torch

    with torch.no_grad():
        vectors = model.encode_text(list(prompts)).float()
    return torch.nn.functional.normalize(vectors, dim=-1).cpu().numpy()


def _gather(
    folder: Path,
    paths: list[str],
    engine: Engine,
    ident: dict[str, Any],
    weights: str | os.PathLike | None,
    plan: Any,
    texts: list[str],
    template: str,
    text_vectors: np.ndarray,
) -> dict[str, Any]:
    records = {r["index"]: r for r in read_records(folder / "index.jsonl")}
    blocks, rows, videos = [], [], []
    for i, path in enumerate(paths):
        rec = records.get(i)
        if rec is None or rec.get("error"):
            videos.append({"video": path, "rows": None, "error": rec["error"] if rec else "not embedded"})
            continue
        block = np.load(folder / "parts" / f"{i:07d}.npy")
        videos.append({"video": path, "rows": [len(rows), len(rows) + len(block)], "error": None})
        rows += [{"video": path, **w} for w in rec["windows"]]
        blocks.append(block)
    dim = int(engine.model.num_features)  # type: ignore[union-attr]
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    meta = {
        "layout": INDEX_LAYOUT,
        "model": engine.model_name,
        "weights": _shown(weights),
        "weights_sha256": ident["weights_files"],
        "videozoo_version": __version__,
        "dim": dim,
        "window": plan.window,
        "stride": plan.stride,
        "views": str(engine.plan),
        "precision": engine.precision.name,
        "template": template,
        "rows": rows,
        "videos": videos,
        "texts": [{"text": t, "prompt": template.format(t), "row": j} for j, t in enumerate(texts)],
    }
    try:
        _save_npy(folder / "vectors.npy", vectors)
        if texts:
            _save_npy(folder / "texts.npy", text_vectors)
        else:
            (folder / "texts.npy").unlink(missing_ok=True)
        write_text_atomic(folder / "rows.json", json.dumps(meta, indent=1) + "\n")
    except OSError as e:
        raise RunError(f"{folder}: cannot write the index ({e.strerror or e}); rerun with --resume") from e
    failed = sum(1 for v in videos if v["error"])
    return {"videos": len(videos), "failed": failed, "rows": len(rows), "dim": dim, "out": str(folder)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- search --------------------------------------------------------------------------------------


def load_index(index: str | os.PathLike) -> tuple[dict[str, Any], np.ndarray]:
    """``rows.json``'s object and the (N, E) vectors of an index folder, checked against each other."""
    folder = Path(index)
    meta_path, vec_path = folder / "rows.json", folder / "vectors.npy"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such index folder (write one with videozoo embed)")
    if not meta_path.is_file() or not vec_path.is_file():
        raise ValueError(f"{folder}: not an index (rows.json and vectors.npy are written by videozoo embed)")
    try:
        meta = json.loads(meta_path.read_text())
        rows = meta["rows"]
        vectors = np.load(vec_path)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder}: a damaged index ({type(e).__name__}: {e}); write it again") from None
    if vectors.ndim != 2 or len(vectors) != len(rows) or (len(rows) and vectors.shape[1] != meta.get("dim")):
        raise ValueError(
            f"{vec_path}: {tuple(vectors.shape)} does not match rows.json ({len(rows)} rows of {meta.get('dim')}); "
            "write the index again"
        )
    return meta, vectors


def search(
    index: str | os.PathLike,
    query: str,
    *,
    top: int = 10,
    weights: str | os.PathLike | None = None,
    model: Any = None,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """The ``top`` windows of the index closest to the text ``query`` (cosine similarity, highest first).

    The query is put into the index's template. A query that is one of the index's texts uses its stored
    vector; any other is embedded by the index's model (``weights``: default those it was made with;
    ``model``: an already created model of that entry, to embed many queries with one load).
    """
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"--top must be at least 1, got {top!r}")
    query = query.strip()
    if not query:
        raise ValueError("the query is empty: give the text to search for")
    meta, vectors = load_index(index)
    stored = {t["text"]: t["row"] for t in meta.get("texts", [])}
    if query in stored:
        q = np.load(Path(index) / "texts.npy")[stored[query]]
    else:
        if model is None and meta["weights"] is None and weights is None:
            raise ValueError(
                f"{index}: embedded with random weights (--weights none): a query can only be embedded by that "
                "same model object (pass model=) or be one of the index's texts"
            )
        if model is None:
            from videozoo.models.factory import create_model

            model = create_model(meta["model"], weights=meta["weights"] if weights is None else weights).to(device)
        elif getattr(model, "model_name", None) != meta["model"]:
            raise ValueError(f"{index}: embedded with {meta['model']}, not {getattr(model, 'model_name', model)}")
        q = embed_texts(model, [meta["template"].format(query)])[0]
    scores = vectors @ q.astype(np.float32)  # (N,): cosine similarities (both sides unit vectors)
    # The top rows without sorting them all: a partition, then those sorted (ties by row).
    part = np.argpartition(-scores, top - 1)[:top] if top < len(scores) else np.arange(len(scores))
    order = part[np.lexsort((part, -scores[part]))]
    return [{**meta["rows"][i], "row": int(i), "score": round(float(scores[i]), 6)} for i in order]
