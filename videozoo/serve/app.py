"""The HTTP API: a thin layer over the engine, one warm engine per served model and worker.

    GET  /             the web page (self-contained, works offline)
    GET  /health       200 with the loaded models once ready, 503 before
    GET  /v1/models    the served models: classes, input config, precision
    POST /v1/predict   multipart `video` (+ `model`, `views`, `top_k`, `images`, and for a zero-shot model
                       `labels`, `template`): one `videozoo predict --json` entry
    POST /v1/timeline  multipart `video` (+ `model`, `stride`, `window`, `min_segment`, `smooth`, `top_k`, and
                       for a zero-shot model `labels`, `template`, `none_threshold`): the timeline.json of
                       `videozoo timeline`

A zero-shot (video-text) model answers over the labels of each request; the embeddings of its last
label sets are kept, so a page that sends the same labels again costs only the video side.

Every error is ``{"error": {"code", "message"}}`` with its status (see :mod:`videozoo.serve.errors`).
OpenAPI documentation is at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from videozoo.engine import Engine, ViewPlan, ViewPlanError
from videozoo.io.errors import StillImageError, VideoDecodeError
from videozoo.jobs.classify import (
    DEFAULT_TEMPLATE,
    check_template,
    is_zero_shot,
    parse_labels,
    relabel,
    video_text_engine,
)
from videozoo.serve import timeline_api
from videozoo.serve.config import ServeConfig
from videozoo.serve.errors import ERROR_SCHEMA, ApiError, install_error_handlers
from videozoo.serve.fields import expected, field_patterns, listed_fields, matches
from videozoo.serve.page import page_html
from videozoo.serve.pool import Engines, InferencePool, NotReady, QueueFull, ShuttingDown
from videozoo.serve.upload import Upload, received_upload

_log = logging.getLogger("videozoo.serve")


class ServeState:
    """What the routes share: the configuration, the pool and the private temporary folder."""

    def __init__(self, config: ServeConfig, pool: InferencePool):
        self.config, self.pool = config, pool
        self.folder: Path | None = None


def build_engines(config: ServeConfig) -> Engines:
    """One engine per served model (called once in each worker: its replicas)."""
    torch.set_num_threads(config.intra_op_threads())
    options = {
        "views": config.views,
        "device": config.device,
        "precision": config.precision,
        "threads": config.decoder_threads or config.intra_op_threads(),
    }
    return {
        # A zero-shot model's labels come with each request (relabel).
        m.name: video_text_engine(m.name, weights=m.weights, **options)
        if is_zero_shot(m.name)
        else Engine.build(m.name, weights=m.weights, **options)
        for m in config.models
    }


def create_app(config: ServeConfig, *, pool: InferencePool | None = None, on_failure=None) -> FastAPI:
    """The FastAPI application; its models load in the background once it starts (``/health`` says when)."""
    pool = pool or InferencePool(lambda: build_engines(config), workers=config.workers, max_queue=config.max_queue)
    state = ServeState(config, pool)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # A private folder (mode 0700) inside TMPDIR: uploads never share a folder with anything else.
        state.folder = Path(tempfile.mkdtemp(prefix="videozoo-serve-", dir=config.temp_root))
        pool.start(on_failure)
        try:
            yield
        finally:
            pool.close(timeout=1.0)  # running jobs had their grace period; daemon threads end with the process
            shutil.rmtree(state.folder, ignore_errors=True)

    app = FastAPI(
        title="videozoo",
        summary="Video action recognition: top-k actions of an uploaded video, and a timeline of a long one.",
        lifespan=lifespan,
    )
    app.state.serve = state
    install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/health", responses={503: {"description": "models still loading, or failed to load"}})
    async def health() -> JSONResponse:
        """200 with the served models once they are loaded and warm; 503 until then."""
        if pool.failure is not None:
            return JSONResponse({"status": "failed", "error": {"code": "load_failed", "message": pool.failure}}, 503)
        if not pool.ready:
            return JSONResponse(
                {"status": "loading", "error": {"code": "loading", "message": "the models are loading"}},
                503,
                headers={"Retry-After": "2"},
            )
        return JSONResponse(
            {
                "status": "ok",
                "models": [m.name for m in config.models],
                "workers": pool.workers,
                "in_flight": pool.in_flight,
                "max_queue": pool.max_queue,
            }
        )

    @app.get("/v1/models", responses={503: {"description": "models still loading"}})
    async def models() -> JSONResponse:
        """The served models: classes, input configuration, precision, default views."""
        _require_ready(pool)
        return JSONResponse(
            {
                "default_model": config.default_model,
                "max_upload_mb": config.max_upload_mb,
                "max_views": config.max_views,
                "timeline": timeline_api.available(),
                "models": [_describe(m.name, m.weights, pool.engines[m.name]) for m in config.models],
            }
        )

    @app.post(
        "/v1/predict",
        openapi_extra=_multipart_doc(
            {
                "model": "a served model (default: the first)",
                "views": "CLIPSxCROPS, e.g. 1x1 or 10x3, or published",
                "top_k": "how many classes to return (default 5)",
                **_LABEL_FIELDS,
                "images": "true: score a still image (PNG, JPEG, ...) as a one-frame clip; by default it is "
                "refused with 415 not_a_video",
            },
            config,
        ),
        responses=_ERROR_RESPONSES,
    )
    async def predict(request: Request) -> JSONResponse:
        """Top-k actions of the uploaded video: the object `videozoo predict --json` prints for it."""
        with _admitted(pool):
            async with received_upload(request, state.folder, max_bytes=config.max_upload_bytes) as upload:
                fields = _Fields(upload, config, allowed={"model", "views", "top_k", "images", "labels", "template"})
                model = fields.model()
                plan = fields.views(pool.engines[model])
                top_k = fields.positive_int("top_k", config.top_k)
                labels = fields.labels(pool.engines[model])
                images = fields.values.get("images", "").strip(" ") == "true"
                _require_video(upload)
                path = upload.path

                def job(engines: Engines) -> dict[str, Any]:
                    engine = engines[model] if labels is None else relabel(engines[model], *labels)
                    return engine.with_views(plan).with_images(images).predict(path).entry(model, top_k=top_k)

                entry = await _run(pool, job, upload)
                entry["video"] = upload.filename  # the name the client gave, not the temporary file's
                return JSONResponse(entry)

    @app.post(
        "/v1/timeline",
        openapi_extra=_multipart_doc(
            {
                "model": "a served model (default: the first)",
                "stride": "seconds between windows (default: half a clip)",
                "window": "seconds per window (default: the model's clip)",
                "min_segment": "seconds under which a segment is absorbed by its neighbours (default: the window)",
                "smooth": "windows in the centred moving average before segmenting (default 3)",
                "top_k": "classes per window (default 5)",
                **_LABEL_FIELDS,
                "none_threshold": "zero-shot models: windows and segments where no label's probability reaches "
                "this (above 1/labels, under 1) are labelled none",
            },
            config,
        ),
        responses={**_ERROR_RESPONSES, 501: {"description": "timelines are not available in this installation"}},
    )
    async def timeline(request: Request) -> JSONResponse:
        """The timeline of the uploaded video: the object `videozoo timeline` writes as timeline.json."""
        if not timeline_api.available():
            raise ApiError(501, "not_implemented", "timelines are not available in this installation of videozoo")
        with _admitted(pool):
            async with received_upload(request, state.folder, max_bytes=config.max_upload_bytes) as upload:
                fields = _Fields(
                    upload,
                    config,
                    allowed={
                        "model",
                        "stride",
                        "window",
                        "min_segment",
                        "smooth",
                        "top_k",
                        "labels",
                        "template",
                        "none_threshold",
                    },
                )
                model = fields.model()
                labels = fields.labels(pool.engines[model])
                options = {
                    "stride": fields.positive_float("stride"),
                    "window": fields.positive_float("window"),
                    "min_segment": fields.non_negative_float("min_segment"),
                    "smooth": fields.positive_int("smooth", 3),
                    "top_k": fields.positive_int("top_k", config.top_k),
                    "none_threshold": fields.none_threshold(len(labels[0]) if labels else None),
                }
                _require_video(upload)
                path = upload.path

                def job(engines: Engines) -> dict[str, Any]:
                    engine = engines[model] if labels is None else relabel(engines[model], *labels)
                    return timeline_api.run(engine, path, **options)

                result = await _run(pool, job, upload)
                result["video"] = upload.filename
                return JSONResponse(result)

    return app


# -- request pieces ---------------------------------------------------------------------------------


class _Fields:
    """The text fields of one request, each checked with a message naming the field."""

    def __init__(self, upload: Upload, config: ServeConfig, *, allowed: set[str]):
        self.values, self.config = upload.fields, config
        unknown = sorted(set(self.values) - allowed)
        if unknown:
            # What the schema lists for this server (a server of classifiers lists no zero-shot fields).
            takes = sorted(listed_fields(dict.fromkeys(allowed, ""), config)[0])
            raise ApiError(
                400,
                "bad_field",
                f"unknown form field(s) {', '.join(unknown)}; this endpoint takes video, {', '.join(takes)}",
            )
        # The schema's pattern of each field, checked first: what the schema refuses, the server refuses.
        patterns = field_patterns(config)
        for name, text in self.values.items():
            if not matches(patterns, name, text):
                raise self._bad(name, f"expected {expected(name, config)}")

    def _bad(self, name: str, why: str) -> ApiError:
        return ApiError(400, "bad_field", f"{name}={self.values.get(name)!r}: {why}")

    def model(self) -> str:
        name = self.values.get("model", "").strip() or self.config.default_model
        served = [m.name for m in self.config.models]
        if name not in served:
            raise ApiError(404, "unknown_model", f"model {name!r} is not served here (served: {', '.join(served)})")
        return name

    def views(self, engine: Engine) -> ViewPlan:
        text = self.values.get("views", "").strip() or self.config.views
        try:
            plan = ViewPlan.parse(text).resolve(engine.input)
        except ViewPlanError as e:
            raise self._bad("views", str(e)) from None
        if plan.clips * plan.crops > self.config.max_views:
            raise self._bad(
                "views",
                f"{plan} is {plan.clips * plan.crops} views; this server takes at most "
                f"{self.config.max_views} per request",
            )
        return plan

    def labels(self, engine: Engine) -> tuple[list[str], str] | None:
        """A zero-shot model's labels and template (required); None for a classifier (which refuses them)."""
        given = {k for k in ("labels", "template") if self.values.get(k, "").strip()}
        if not is_zero_shot(engine.model_name):  # a classifier: its classes are fixed
            if given:
                name = sorted(given)[0]
                raise self._bad(
                    name,
                    f"{engine.model_name} has fixed classes; labels written per request are for a zero-shot "
                    f"model ({', '.join(self._zero_shot()) or 'none is served here'})",
                )
            return None
        if "labels" not in given:
            raise ApiError(
                400,
                "missing_labels",
                f"{engine.model_name} is a zero-shot model: send its classes as the form field labels "
                "(comma-separated, e.g. labels=person falls,dog runs)",
            )
        try:
            labels = parse_labels(self.values["labels"])
        except ValueError as e:
            raise self._bad("labels", str(e)) from None
        if len(labels) > MAX_LABELS:
            raise self._bad("labels", f"{len(labels)} labels; this server takes at most {MAX_LABELS} per request")
        template = self.values.get("template", "").strip() or DEFAULT_TEMPLATE
        try:
            check_template(template)
        except ValueError as e:
            raise self._bad("template", str(e)) from None
        return labels, template

    def _zero_shot(self) -> list[str]:
        return [m.name for m in self.config.models if is_zero_shot(m.name)]

    def none_threshold(self, labels: int | None) -> float | None:
        text = self.values.get("none_threshold", "").strip()
        if not text:
            return None
        if labels is None:
            raise self._bad("none_threshold", "only for a zero-shot model, with its labels")
        try:
            p = float(text)
        except ValueError:
            raise self._bad("none_threshold", "expected a probability") from None
        if not (math.isfinite(p) and 1 / labels < p < 1):
            raise self._bad("none_threshold", f"must be above 1/{labels} = {1 / labels:.3f} and under 1")
        return p

    def positive_int(self, name: str, default: int) -> int:
        text = self.values.get(name, "").strip()
        if not text:
            return default
        try:
            n = int(text)
        except ValueError:
            raise self._bad(name, "expected a whole number") from None
        if n < 1:
            raise self._bad(name, "must be at least 1")
        return n

    def _float(self, name: str) -> float | None:
        text = self.values.get(name, "").strip()
        if not text:
            return None
        try:
            x = float(text)
        except ValueError:
            raise self._bad(name, "expected a number of seconds") from None
        if not math.isfinite(x):
            raise self._bad(name, "expected a finite number of seconds")
        return x

    def positive_float(self, name: str) -> float | None:
        x = self._float(name)
        if x is not None and x <= 0:
            raise self._bad(name, "must be more than 0 seconds")
        return x

    def non_negative_float(self, name: str) -> float | None:
        x = self._float(name)
        if x is not None and x < 0:
            raise self._bad(name, "must be 0 seconds or more")
        return x


# A request's labels are embedded before its video is scored: bounded like its views.
MAX_LABELS = 1000

_LABEL_FIELDS = {
    "labels": "zero-shot models (required there, refused elsewhere): the classes, comma-separated",
    "template": 'zero-shot models: the prompt each label is put into, {} replaced (default "a video of {}.")',
}


def _require_video(upload: Upload) -> None:
    if upload.path is None:
        raise ApiError(400, "missing_video", "send the video as a multipart file field named `video`")
    if upload.size == 0:
        raise ApiError(422, "empty_video", f"{upload.filename}: the uploaded file is empty")


def _require_ready(pool: InferencePool) -> None:
    if pool.failure is not None:
        raise ApiError(503, "load_failed", f"the models failed to load: {pool.failure}")
    if not pool.ready:
        raise ApiError(503, "loading", "the models are loading; retry shortly", headers={"Retry-After": "2"})


@contextlib.contextmanager
def _admitted(pool: InferencePool) -> Iterator[None]:
    try:
        with pool.admit():
            yield
    except QueueFull as e:
        raise ApiError(
            503,
            "busy",
            f"every worker is busy and the queue is full; retry in {e.retry_after} s",
            headers={"Retry-After": str(e.retry_after)},
        ) from None
    except NotReady:
        _require_ready(pool)
        raise
    except ShuttingDown:
        raise ApiError(503, "shutting_down", "the server is shutting down", headers={"Retry-After": "5"}) from None


async def _run(pool: InferencePool, job, upload: Upload) -> Any:
    """Run ``job`` in the pool; a video that cannot be decoded is the client's error, named by its file."""
    try:
        return await pool.run(job)
    except asyncio.CancelledError:
        if not pool.closing:
            raise
        # Stopping, and the grace period is over: the client is told, not left with a broken answer.
        raise ApiError(
            503, "shutting_down", "the server stopped before this request finished", headers={"Retry-After": "5"}
        ) from None
    except ShuttingDown:
        raise ApiError(503, "shutting_down", "the server is shutting down", headers={"Retry-After": "5"}) from None
    except StillImageError as e:
        raise ApiError(
            415,
            "not_a_video",
            f"{upload.filename}: a still image ({e.kind}), not a video: one picture holds no motion to recognise "
            "(POST /v1/predict with images=true scores it as a one-frame clip)",
        ) from None
    except VideoDecodeError as e:
        reason = str(e).replace(str(upload.path), "").lstrip(": ") or "unreadable"
        raise ApiError(415, "not_a_video", f"{upload.filename}: not a video that can be decoded ({reason})") from None
    except (RuntimeError, ValueError, OSError) as e:
        raise ApiError(422, "undecodable_video", _name_upload(str(e), upload)) from None
    except Exception as e:  # a fault of the server, not of the request: logged with its traceback
        _log.exception("request for %s failed", upload.filename)
        raise ApiError(500, "internal_error", f"{type(e).__name__}: {_name_upload(str(e), upload)}") from None


def _name_upload(message: str, upload: Upload) -> str:
    """The message with the temporary file's path replaced by the client's file name."""
    message = message.replace(str(upload.path), upload.filename)
    return message if upload.filename in message else f"{upload.filename}: {message}"


def _describe(name: str, weights: str | None, engine: Engine) -> dict[str, Any]:
    cfg = engine.input
    names = engine.class_names
    return {
        "name": name,
        "weights": weights if weights is None or "/" not in str(weights) else Path(weights).name,
        "classes": names,
        "num_classes": len(names) if names else int(getattr(engine.model, "num_classes", 0) or 0) or None,
        "zero_shot": is_zero_shot(name),
        "input": {
            **{
                k: v
                for k, v in asdict(cfg).items()
                if k
                in (
                    "num_frames",
                    "sampling_rate",
                    "fps",
                    "short_side",
                    "crop_size",
                    "mean",
                    "std",
                    "slow_alpha",
                    "test_clips",
                    "test_crops",
                )
            },
            "clip_seconds": cfg.clip_seconds,
        },
        "precision": engine.precision.name,
        "device": str(engine.device),
        "views": str(engine.plan),
        "batch_size": engine.batch_size,
    }


def _multipart_doc(fields: dict[str, str], config: ServeConfig) -> dict:
    """The OpenAPI request body of a multipart endpoint (its body is parsed by hand, as it streams).

    It lists the fields the endpoint takes and no others (the server refuses others with 400
    bad_field), each with the pattern the server checks its value against.
    """
    patterns = field_patterns(config)
    listed, required = listed_fields(fields, config)
    props: dict[str, Any] = {"video": {"type": "string", "format": "binary", "description": "the video file"}}
    for name, what in listed.items():
        props[name] = {"type": "string", "description": what}
        if name in patterns:
            props[name]["pattern"] = patterns[name]
    schema = {"type": "object", "properties": props, "required": ["video", *required], "additionalProperties": False}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_ERROR_RESPONSES: dict = {
    status: {"description": what, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
    for status, what in [
        (400, "a bad form field (views, top_k, ...) or a malformed body"),
        (404, "the model is not served here"),
        (413, "the upload is larger than the server's limit"),
        (415, "the upload is not a video (or not multipart)"),
        (422, "the video cannot be decoded (empty, truncated)"),
        (503, "busy (queue full; see Retry-After), loading or shutting down"),
    ]
}
