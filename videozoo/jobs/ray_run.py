"""Features (dense and pooled) and predictions over a Ray cluster (``--ray [ADDRESS]``; the ``ray`` extra).

One Ray Data pipeline over the videos still to compute, one block per video:

1. decoding, in CPU tasks (``map_batches`` with a function): a video becomes its views, pickled,
   one row for the pooled features and predict, one row per forward batch of windows for dense
   features (so a long video streams through the object store instead of being held whole);
2. the engine, in a pool of actors (``map_batches`` with a class and ``compute=ActorPoolStrategy``),
   each holding the model once: one GPU per actor where the cluster has GPUs, else one CPU;
3. the driver (this process) takes the results as they come and writes them with the single-process
   jobs' own writers (:mod:`videozoo.jobs.dense`, :mod:`videozoo.jobs.features`): the same files,
   the same identity checks, atomic writes, one index line per finished or failed video.

What is retried: a decoding task whose process dies is run again (``max_retries``), an actor whose
process dies is restarted and its batch run again (``max_restarts``, ``max_task_retries``); the
driver keeps the first copy of every result, so a retried task can neither double nor cut an
output. A video whose decoding or forward pass raises is an error entry, as in the single-process
jobs; a video whose task still dies after its retries is an error entry too, and the run goes on.

``ray`` is imported only here and only when a run starts, so ``import videozoo`` never loads it.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videozoo.data.transforms import ClipTransform
from videozoo.engine import Engine
from videozoo.engine.runtime import resolve_backend
from videozoo.engine.views import load_views, stack_views
from videozoo.jobs import dense, features
from videozoo.jobs.records import RecordWriter
from videozoo.jobs.rundir import RunLock, prepare_out

# The object store of a Ray this run starts itself: enough for a few videos' views in flight, small
# enough for a laptop (Ray's default takes 30% of the memory).
LOCAL_OBJECT_STORE_BYTES = 1 << 30
# Runs of a task or an actor after its process died, before its video is recorded as an error.
RETRIES = 3


@dataclass
class RayOptions:
    """Where a run goes: ``address`` of a cluster (None: a local Ray, started and stopped by the
    run, or the one this process is already connected to); ``actors``: engine actors (default: one
    per GPU of the cluster, else one)."""

    address: str | None = None
    actors: int | None = None
    retries: int = RETRIES


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RuntimeError("--ray needs the ray extra: pip install 'videozoo[ray]'") from None
    return ray


@contextmanager
def connected(options: RayOptions) -> Iterator[Any]:
    """``ray``, connected to the cluster at ``options.address``, or to a local Ray started here and
    shut down on leaving; a connection the caller already holds is used and left open."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if options.address:
            ray.init(address=options.address, log_to_driver=True)
        else:
            ray.init(object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
        raise RuntimeError(f"--ray: cannot start or reach {where} ({e})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# -- the engine's placement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the engine actors run: their device, resources and count, and the precision every
    one of them uses (resolved once, on an actor's kind of worker, so that all agree)."""

    device: str  # "cpu" or "cuda" (Ray gives each GPU actor its own GPU as cuda:0)
    actors: int
    num_gpus: float
    precision: str = "auto"


def placement(ray: Any, device: str, actors: int | None, videos: int) -> Placement:
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(
            f"--device {device}: under --ray each engine actor gets a GPU of its own from Ray; "
            "use --device cuda (or auto: GPUs where the cluster has them), or cpu"
        )
    if device == "cuda" and not gpus:
        raise ValueError("--device cuda: the Ray cluster has no GPU (use --device cpu or auto)")
    on_gpu = device == "cuda" or (device == "auto" and gpus > 0)
    default = gpus if on_gpu else 1
    count = max(1, min(actors or default, max(videos, 1)))
    return Placement("cuda" if on_gpu else "cpu", count, 1.0 if on_gpu else 0.0)


def resolve_on_worker(ray: Any, where: Placement, build: dict[str, Any]) -> Placement:
    """The precision an engine of ``build`` takes on an actor's kind of worker (``auto`` decided there)."""

    def precision() -> str:
        # Eager and unoptimised: the precision does not depend on the backend, and this engine runs nothing.
        probe = build if build["job"] == "dense" else {**build, "backend": _eager(build)}
        return _build_engine(probe, where.device, build["precision"], optimize=False).precision.name

    task = ray.remote(num_cpus=1, num_gpus=where.num_gpus, max_retries=RETRIES)(precision)
    return Placement(where.device, where.actors, where.num_gpus, ray.get(task.remote(), timeout=600))


def _build_engine(build: dict[str, Any], device: str, precision: str, **extra: Any) -> Engine:
    """An engine from the job's settings (``build``): dense features' (with its crop) or the registry's."""
    if build["job"] == "dense":
        cfg = dense.DenseConfig(**{**build["cfg"], "device": device, "precision": precision})
        return dense.build_engine(cfg)
    return Engine.build(
        build["model"],
        weights=build["weights"],
        backend=build["backend"],
        views=build["views"],
        device=device,
        precision=precision,
        batch_size=build["batch_size"],
        **extra,
    )


# -- the pipeline's stages ---------------------------------------------------------------------------


COLUMNS = ("index", "path", "chunk", "last", "payload", "error")


def _row(index: int, path: str, chunk: int, last: bool, payload: bytes = b"", error: str = "") -> dict[str, list]:
    """One output row of a stage, as a batch of one: video ``index`` at ``path``, its batch
    ``chunk`` (``last``: the video's final row), ``payload`` pickled, ``error`` '' when none."""
    return dict(zip(COLUMNS, ([index], [path], [chunk], [last], [payload], [error]), strict=True))


def decode_videos(batch: dict[str, np.ndarray], job: str, decoder: Any, plan: Any, batch_windows: int):
    """Decoding stage (a Ray task per block): each video's views, pickled.

    job ``dense``: a row per ``batch_windows`` windows, ``(views, window records)``, the last one
    also carrying the pass's :class:`~videozoo.jobs.dense.DenseDecode`; ``pooled`` / ``predict``:
    one row, the video's :class:`~videozoo.engine.views.VideoViews`. A video that cannot be
    decoded gives one row with its error.
    """
    for index, path in zip(batch["index"], batch["path"], strict=True):
        index, path = int(index), str(path)
        chunk = 0
        try:
            if job == "dense":
                info = dense.DenseDecode()
                for pending in dense.window_batches(decoder, path, plan, batch_windows, info):
                    records = [w.record() for w, _ in pending]
                    yield _row(index, path, chunk, False, pickle.dumps(([v for _, v in pending], records)))
                    chunk += 1
                yield _row(index, path, chunk, True, pickle.dumps(info))
            else:
                transform, threads, fps = decoder
                loaded = load_views(path, transform, threads=threads, frame_fps=fps, lazy=False)
                yield _row(index, path, chunk, True, pickle.dumps(loaded))
        except Exception as e:  # one bad video never stops the run
            yield _row(index, path, chunk, True, error=dense.error_text(path, e))


class EngineActor:
    """Engine stage (an actor of the pool): the model, loaded once; a row of views -> its outputs,
    pickled: dense ``(windows, D)`` float32 features and the window records, pooled ``(V, D)``
    features and clip records, predict the ``predict --json`` entry."""

    def __init__(self, build: dict[str, Any], where: Placement, top_k: int):
        self.job = build["job"]
        self.model = build["model"]
        self.top_k = top_k
        self.engine = _build_engine(build, where.device, where.precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in COLUMNS}
        for index, path, chunk, last, payload, error in zip(*(batch[key] for key in COLUMNS), strict=True):
            result, error = self._run(str(path), bool(last), bytes(payload), str(error))
            for key, value in zip(COLUMNS, (int(index), str(path), int(chunk), bool(last), result, error), strict=True):
                out[key].append(value)
        return out

    def _run(self, path: str, last: bool, payload: bytes, error: str) -> tuple[bytes, str]:
        if error or (self.job == "dense" and last):
            return payload, error  # an error, or the end of a video's windows: passed on
        item = pickle.loads(payload)
        try:
            if self.job == "dense":
                views, records = item
                feats = self.engine.forward(stack_views(views), "features").float().numpy()  # (windows, D)
                return pickle.dumps((feats, records)), ""
            if self.job == "pooled":
                feats = self.engine.forward(item.views, "features").numpy()  # (V, D)
                return pickle.dumps((feats, features.clip_records(item))), ""
            entry = self.engine.predict_views(item).entry(self.model, top_k=self.top_k)
            return json.dumps(entry).encode(), ""
        except Exception as e:  # one bad video never stops the run
            return b"", dense.error_text(path, e)


@dataclass
class _Video:
    """The results of one video that have reached the driver: chunk number -> payload."""

    chunks: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None  # chunks in all, once the last one is here
    error: str = ""


def run_pipeline(
    ray: Any,
    todo: list[tuple[int, str]],
    job: str,
    decoder: Any,
    build: dict[str, Any],
    where: Placement,
    options: RayOptions,
    *,
    plan: Any = None,
    batch_windows: int = 1,
    top_k: int = 5,
) -> Iterator[tuple[int, list[bytes] | None, str]]:
    """Run the pipeline over ``todo`` ((index, path) pairs) and yield ``(index, payloads in chunk
    order, '')`` for each finished video, ``(index, None, error)`` for each failed one, as they come;
    then an error for every video whose blocks were lost after their retries."""
    from ray.data import DataContext

    if not todo:
        return
    ctx = DataContext.get_current()
    # A block whose task still fails after its retries is dropped, not the run: its video is an error.
    ctx.max_errored_blocks = len(todo) * 4
    ds = ray.data.from_items([{"index": i, "path": p} for i, p in todo], override_num_blocks=len(todo))
    # Retries are bounded (Ray Data's default is to retry forever: a video that kills its worker
    # every time would hang the run). This Ray takes them only as remote args, which it warns of.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        ds = _stages(ds, job, decoder, build, where, options, plan, batch_windows, top_k)
    yield from _collect(ds, todo, options)


def _stages(ds: Any, job, decoder, build, where: Placement, options: RayOptions, plan, batch_windows, top_k) -> Any:
    from ray.data import ActorPoolStrategy

    ds = ds.map_batches(
        decode_videos,
        fn_kwargs={"job": job, "decoder": decoder, "plan": plan, "batch_windows": batch_windows},
        batch_size=1,
        batch_format="numpy",
        num_cpus=1,
        max_retries=options.retries,
    )
    ds = ds.map_batches(
        EngineActor,
        fn_constructor_kwargs={"build": build, "where": where, "top_k": top_k},
        compute=ActorPoolStrategy(size=where.actors),
        batch_size=1,
        batch_format="numpy",
        num_cpus=0 if where.num_gpus else 1,
        num_gpus=where.num_gpus,
        max_restarts=options.retries,
        max_task_retries=options.retries,
    )
    return ds


def _collect(
    ds: Any, todo: list[tuple[int, str]], options: RayOptions
) -> Iterator[tuple[int, list[bytes] | None, str]]:
    videos: dict[int, _Video] = {}
    finished: set[int] = set()
    for row in ds.iter_rows():
        index = int(row["index"])
        if index in finished:
            continue  # a result that a retried task gave again
        video = videos.setdefault(index, _Video())
        if row["error"]:
            finished.add(index)
            videos.pop(index)
            yield index, None, str(row["error"])
            continue
        video.chunks.setdefault(int(row["chunk"]), bytes(row["payload"]))
        if row["last"]:
            video.total = int(row["chunk"]) + 1
        if video.total is not None and len(video.chunks) == video.total:
            finished.add(index)
            videos.pop(index)
            yield index, [video.chunks[c] for c in range(video.total)], ""
    for index, path in todo:
        if index not in finished:
            yield (
                index,
                None,
                f"WorkerDied: {path}: its Ray task failed {options.retries + 1} times (the worker process died)",
            )


# -- the jobs --------------------------------------------------------------------------------------


def _local_engine(build: dict[str, Any]) -> Engine:
    """The driver's engine: the model's input and transform and the run's checks; never runs a video.
    Built on the CPU in fp32, eager, whatever the actors use (the transform depends on neither)."""
    if build["job"] == "dense":
        return _build_engine(build, "cpu", "fp32")
    return _build_engine({**build, "backend": _eager(build)}, "cpu", "fp32", optimize=False)


def _eager(build: dict[str, Any]) -> str:
    """The backend of an engine that runs nothing: torch, except for an ONNX file (which is no torch model)."""
    return "onnxruntime" if resolve_backend(build["backend"], build["weights"]) == "onnxruntime" else "torch"


def extract_dense(cfg: dense.DenseConfig, options: RayOptions) -> dict[str, Any]:
    """:func:`videozoo.jobs.dense.extract_dense` over Ray: the same outputs, files and summary."""
    from dataclasses import asdict

    plan, items, names = dense.check_config(cfg)
    out = prepare_out(cfg.out)
    build = {"job": "dense", "model": cfg.model, "precision": cfg.precision, "cfg": asdict(cfg)}
    engine = _local_engine(build)
    dense.check_clip_frames(engine, plan.clip_frames)
    batch_windows = cfg.batch_size or dense.windows_per_batch(engine, plan.clip_frames)
    # The actors' engines run batches of exactly these windows, as the single-process run does.
    build["cfg"]["batch_size"] = batch_windows
    dim = int(getattr(engine.model, "num_features", 0))
    with RunLock(out, wait=cfg.wait), connected(options) as ray:
        where = placement(ray, cfg.device, options.actors, len(items))
        where = resolve_on_worker(ray, where, build)
        run = dense.open_run(cfg, plan, engine, items, names, out, precision=where.precision)
        decoder = dense.DenseDecoder.from_engine(engine, cfg.threads)
        del engine
        computed = windows = 0
        todo = [(i, items[i].path) for i in run.todo]
        with RecordWriter(run.index_path) as index:
            for i, payloads, error in run_pipeline(
                ray, todo, "dense", decoder, build, where, options, plan=plan, batch_windows=batch_windows
            ):
                if payloads is None:
                    dense.write_video(run, index, i, None, error)
                    continue
                *parts, last = payloads
                info = pickle.loads(last)
                rows, records = dense.FeatureRows(), []
                for p in parts:
                    feats, recs = pickle.loads(p)
                    rows.append(feats)
                    records.extend(recs)
                result = dense.dense_result(plan, info, rows.parts(), records, dim)
                windows += dense.write_video(run, index, i, result, None)
                computed += 1
        return run.finish(computed, windows)


def _registry_build(
    job: str, model: str, weights: Any, backend: str, views: Any, batch_size: int | None, precision: str
) -> dict:
    return {
        "job": job,
        "precision": precision,
        "model": model,
        "weights": weights,
        "backend": backend,
        "views": str(views),
        "batch_size": batch_size,
    }


def _view_decoder(engine: Engine, threads: int | None) -> tuple[ClipTransform, int | None, float]:
    return engine.transform, threads, engine.input.fps


def extract_features(cfg: features.FeatureConfig, options: RayOptions) -> dict:
    """:func:`videozoo.jobs.features.extract_features` over Ray: the same parts, index and gathered files."""
    features.check_config(cfg)
    if cfg.tokens:
        raise ValueError("--tokens: the encoder's tokens are written by single-process runs (leave out --ray)")
    out = prepare_out(cfg.out)
    build = _registry_build("pooled", cfg.model, cfg.weights, cfg.backend, cfg.views, cfg.batch_size, cfg.precision)
    with RunLock(out, wait=cfg.wait):
        engine = _local_engine(build)
        with connected(options) as ray:
            where = placement(ray, cfg.device, options.actors, 1)
            where = resolve_on_worker(ray, where, build)
            run = features.open_run(cfg, out, engine, precision=where.precision)
            todo = [(i, run.videos.items[i].path) for i in run.todo]
            where = Placement(where.device, min(where.actors, max(len(todo), 1)), where.num_gpus, where.precision)
            with RecordWriter(run.index_path) as index:
                for i, payloads, error in run_pipeline(
                    ray, todo, "pooled", _view_decoder(engine, None), build, where, options
                ):
                    if payloads is None:
                        features.write_video(run, index, i, None, None, error)
                    else:
                        feats, clips = pickle.loads(payloads[0])
                        features.write_video(run, index, i, feats, clips, None)
        return run.gather()


def predict(
    videos: list[str],
    options: RayOptions,
    *,
    model: str,
    weights: Any,
    views: Any,
    device: str,
    precision: str,
    backend: str,
    batch_size: int | None,
    threads: int | None,
    top_k: int,
) -> Iterator[dict[str, Any]]:
    """The ``predict --json`` entry of every video, in the order given (an error entry for a video
    that failed, as ``videozoo predict`` writes it)."""
    build = _registry_build("predict", model, weights, backend, views, batch_size, precision)
    engine = _local_engine(build)
    with connected(options) as ray:
        where = placement(ray, device, options.actors, len(videos))
        where = resolve_on_worker(ray, where, build)
        print(
            f"videozoo predict: {model}, {engine.plan} views, precision {where.precision}, on Ray: "
            f"{where.actors} engine actor(s) on {where.device}",
            file=sys.stderr,
            flush=True,
        )
        ready: dict[int, dict[str, Any]] = {}
        next_out = 0
        todo = list(enumerate(os.fspath(v) for v in videos))
        for i, payloads, error in run_pipeline(
            ray, todo, "predict", _view_decoder(engine, threads), build, where, options, top_k=top_k
        ):
            if payloads is None:
                ready[i] = {
                    "video": videos[i],
                    "model": model,
                    "views": str(engine.plan),
                    "precision": where.precision,
                    "error": error,
                }
            else:
                ready[i] = json.loads(payloads[0])
            while next_out in ready:  # in the order given, each as soon as those before it are out
                yield ready.pop(next_out)
                next_out += 1
