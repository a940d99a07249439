"""`videozoo serve`: the API equals the CLI, bad uploads, the size limit, concurrency, temporary
files, SIGTERM, and the page in a real browser (Playwright + Debian's chromium)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'videozoo[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'videozoo[serve]')")
pytest.importorskip("python_multipart", reason="the serve extra is not installed (pip install 'videozoo[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (in the test extra) is not installed")

import uvicorn  # noqa: E402

import videozoo  # noqa: E402
from videogen import make_video  # noqa: E402
from videozoo.engine import Engine  # noqa: E402
from videozoo.serve import ServeConfig, ServedModel, create_app  # noqa: E402

MODEL = "x3d_xs"
SECOND = "x3d_s"  # a second served model, random weights
LIMIT_MB = 1.0
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """Random x3d_xs weights with a sharpened head, so the top classes are far apart (no near-ties)."""
    torch.manual_seed(0)
    model = videozoo.create_model(MODEL)
    with torch.no_grad():
        model.blocks[5].proj.weight.mul_(1000.0)  # random features are tiny: top-1 ~10%, clear gaps
    return str(videozoo.save_model(model, tmp_path_factory.mktemp("w") / "x3d_xs_sharp.pth"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    """Eight small, different clips."""
    root = tmp_path_factory.mktemp("videos")
    return [
        make_video(
            root / f"clip{i}.mp4",
            num_frames=40 + 4 * i,
            width=96,
            height=72,
            pattern="noise" if i % 2 else "counter",
            seed=i,
        )
        for i in range(8)
    ]


class LiveServer:
    """The app on uvicorn in a background thread, on a free port of 127.0.0.1."""

    def __init__(self, config: ServeConfig):
        self.app = create_app(config)
        self.state = self.app.state.serve
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        self.client = httpx.Client(base_url=self.url, timeout=120)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/health").status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("the test server did not become ready in 180 s")

    @property
    def pool(self):
        return self.state.pool

    def stored(self) -> list[Path]:
        """Files in the server's private temporary folder."""
        return sorted(self.state.folder.iterdir())

    def predict(self, video: Path | None, name: str | None = None, **fields):
        if video is None:  # a multipart body of text fields only
            return self.client.post("/v1/predict", files={k: (None, str(v)) for k, v in fields.items()})
        files = {"video": (name or video.name, video.read_bytes(), "video/mp4")}
        return self.client.post("/v1/predict", files=files, data={k: str(v) for k, v in fields.items()})

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    config = ServeConfig(
        models=(ServedModel(MODEL, weights), ServedModel(SECOND, None)),
        workers=2,
        max_queue=8,
        max_upload_mb=LIMIT_MB,
        precision="fp32",
        temp_root=str(tmp_path_factory.mktemp("servetmp")),
    )
    live = LiveServer(config)
    yield live
    folder = live.state.folder
    live.stop()
    assert not folder.exists(), "the private temporary folder outlived the server"


@pytest.fixture(scope="module")
def engine(weights):
    return Engine.build(MODEL, weights=weights, precision="fp32")


def assert_same_entry(got: dict, want: dict, tol: float = 1e-4) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for key in want:
        if key in ("seconds", "top_k"):
            continue
        assert got[key] == want[key], key
    assert [(r["label"], r["index"]) for r in got["top_k"]] == [(r["label"], r["index"]) for r in want["top_k"]]
    for a, b in zip(got["top_k"], want["top_k"], strict=True):
        assert abs(a["probability"] - b["probability"]) <= tol


def assert_healthy(server: LiveServer) -> None:
    assert server.client.get("/health").status_code == 200
    assert server.stored() == [], "an upload was left in the temporary folder"


# -- the API ------------------------------------------------------------------------------------------


def test_health_and_models(server):
    health = server.client.get("/health").json()
    assert health["status"] == "ok" and health["models"] == [MODEL, SECOND]
    info = server.client.get("/v1/models").json()
    assert info["default_model"] == MODEL and info["max_upload_mb"] == LIMIT_MB
    first = info["models"][0]
    assert first["name"] == MODEL and first["precision"] == "fp32" and first["views"] == "1x1"
    assert first["classes"] == list(videozoo.kinetics400_classes()) and first["num_classes"] == 400
    spec = videozoo.get_spec(MODEL).input
    assert (first["input"]["num_frames"], first["input"]["crop_size"]) == (spec.num_frames, spec.crop_size)
    assert first["input"]["clip_seconds"] == pytest.approx(spec.clip_seconds)
    assert [m["name"] for m in info["models"]] == [MODEL, SECOND]


def test_predict_equals_the_cli(server, weights, videos):
    video = videos[0]
    cmd = [
        sys.executable,
        "-m",
        "videozoo",
        "predict",
        video.name,
        "--model",
        MODEL,
        "--weights",
        weights,
        "--precision",
        "fp32",
        "--views",
        "2x3",
        "--top-k",
        "3",
        "--json",
    ]
    proc = subprocess.run(
        cmd, cwd=video.parent, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 0, proc.stderr
    want = json.loads(proc.stdout.strip().splitlines()[-1])
    r = server.predict(video, views="2x3", top_k=3)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["video"] == video.name and got["views"] == "2x3" and len(got["top_k"]) == 3
    assert_same_entry(got, want)
    assert_healthy(server)


def test_predict_defaults_equal_the_engine(server, engine, videos):
    r = server.predict(videos[1])
    assert r.status_code == 200, r.text
    want = engine.predict(videos[1]).entry(MODEL, top_k=5)
    want["video"] = videos[1].name
    assert_same_entry(r.json(), want)


def test_second_model_is_served(server, videos):
    r = server.predict(videos[2], model=SECOND, top_k=2)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == SECOND and len(r.json()["top_k"]) == 2


def test_engine_with_views_shares_the_model(engine, videos):
    other = engine.with_views("2x3")
    assert other.model is engine.model and str(other.plan) == "2x3" and str(engine.plan) == "1x1"
    assert engine.with_views("1x1") is engine
    assert other.load(videos[0]).num_views == 6 and engine.load(videos[0]).num_views == 1


def _truncated(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


BAD = [
    # (case, how to make the upload, form fields, status, error code)
    ("views banana", "clip", {"views": "banana"}, 400, "bad_field"),
    ("views 0x3", "clip", {"views": "0x3"}, 400, "bad_field"),
    ("views too many", "clip", {"views": "20x3"}, 400, "bad_field"),
    ("top_k 0", "clip", {"top_k": "0"}, 400, "bad_field"),
    ("top_k word", "clip", {"top_k": "five"}, 400, "bad_field"),
    ("unknown field", "clip", {"topk": "3"}, 400, "bad_field"),
    ("unknown model", "clip", {"model": "resnet9000"}, 404, "unknown_model"),
    ("no video part", None, {"top_k": "3"}, 400, "missing_video"),
    ("text file", "text", {}, 415, "not_a_video"),
    ("empty file", "empty", {}, 422, "empty_video"),
    ("truncated mp4", "truncated_mp4", {}, (415, 422), None),
    ("random bytes", "random", {}, (415, 422), None),
]


@pytest.mark.parametrize("case, kind, fields, status, code", BAD, ids=[b[0] for b in BAD])
def test_bad_requests(server, videos, tmp_path, case, kind, fields, status, code):
    video = {
        None: None,
        "clip": videos[0],
        "text": tmp_path / "notes.txt",
        "empty": tmp_path / "empty.mp4",
        "truncated_mp4": tmp_path / "cut.mp4",
        "random": tmp_path / "noise.mp4",
    }[kind]
    if kind == "text":
        video.write_text("this is not a video\n" * 50)
    elif kind == "empty":
        video.write_bytes(b"")
    elif kind == "truncated_mp4":
        _truncated(videos[0], video, 0.4)
    elif kind == "random":
        video.write_bytes(os.urandom(50_000))
    r = server.predict(video, **fields)
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code
    if video is not None and r.status_code in (415, 422):
        assert video.name in body["error"]["message"] and "upload-" not in body["error"]["message"]
    assert_healthy(server)


def test_not_multipart_and_unknown_route(server):
    r = server.client.post("/v1/predict", json={"video": "x"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = server.client.get("/v2/nothing")
    assert r.status_code == 404 and "error" in r.json()
    assert_healthy(server)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("long") / "long.mp4", num_frames=150, width=96, height=72, pattern="noise", seed=7
    )


def _timeline_available() -> bool:
    from videozoo.serve import timeline_api

    return timeline_api.available()


def test_timeline_bad_fields(server, videos):
    for fields, says in [
        ({"stride": "-1"}, "stride"),
        ({"window": "abc"}, "window"),
        ({"smooth": "0"}, "smooth"),
        ({"min_segment": "-2"}, "min_segment"),
    ]:
        r = server.client.post("/v1/timeline", files={"video": ("a.mp4", videos[3].read_bytes())}, data=fields)
        if not _timeline_available():
            assert r.status_code == 501 and r.json()["error"]["code"] == "not_implemented"
            continue
        assert r.status_code == 400 and says in r.json()["error"]["message"], r.text
    assert_healthy(server)


def test_timeline_equals_the_cli(server, weights, long_video, tmp_path):
    if not _timeline_available():
        pytest.skip("this installation has no timeline job (videozoo.jobs.timeline)")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "videozoo",
        "timeline",
        long_video.name,
        "--model",
        MODEL,
        "--weights",
        weights,
        "--precision",
        "fp32",
        "--stride",
        "0.5",
        "--min-segment",
        "0.4",
        "--top-k",
        "3",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        cmd,
        cwd=long_video.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    want = json.loads((out / "timeline.json").read_text())
    r = server.client.post(
        "/v1/timeline",
        files={"video": (long_video.name, long_video.read_bytes())},
        data={"stride": "0.5", "min_segment": "0.4", "top_k": "3"},
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == set(want)
    for key in ("video", "model", "fps", "duration", "window", "stride", "precision"):
        assert got[key] == want[key], key
    assert len(got["windows"]) == len(want["windows"]) >= 4
    for a, b in zip(got["windows"], want["windows"], strict=True):
        assert {k: v for k, v in a.items() if k != "top_k"} == {k: v for k, v in b.items() if k != "top_k"}
        assert [x["label"] for x in a["top_k"]] == [x["label"] for x in b["top_k"]]
        assert all(
            abs(x["probability"] - y["probability"]) <= 1e-4 for x, y in zip(a["top_k"], b["top_k"], strict=True)
        )
    assert [(s["label"], s["start"], s["end"]) for s in got["segments"]] == [
        (s["label"], s["start"], s["end"]) for s in want["segments"]
    ]
    assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in zip(got["segments"], want["segments"], strict=True))
    assert_healthy(server)


def test_health_is_503_until_the_models_are_loaded(weights, videos, tmp_path):
    from videozoo.serve.app import build_engines
    from videozoo.serve.pool import InferencePool

    config = ServeConfig(models=(ServedModel(MODEL, weights),), precision="fp32", temp_root=str(tmp_path))
    release = threading.Event()

    def slow_build():
        assert release.wait(120)
        return build_engines(config)

    # Started by hand, not with LiveServer: it must be reachable before it is ready.
    app = create_app(config, pool=InferencePool(slow_build, workers=1, max_queue=2))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    r = client.get("/health")
                    break
                time.sleep(0.05)
            assert r.status_code == 503 and r.json()["status"] == "loading" and "Retry-After" in r.headers
            r = client.post("/v1/predict", files={"video": ("a.mp4", videos[0].read_bytes())})
            assert r.status_code == 503 and r.json()["error"]["code"] == "loading"
            assert client.get("/v1/models").status_code == 503
            release.set()
            for _ in range(600):
                if client.get("/health").status_code == 200:
                    break
                time.sleep(0.1)
            assert client.get("/health").json()["models"] == [MODEL]
            assert client.post("/v1/predict", files={"video": ("a.mp4", videos[0].read_bytes())}).status_code == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_a_model_that_fails_to_load_stops_the_server_with_1(tmp_path):
    missing = tmp_path / "missing.pth"
    proc = subprocess.run(
        [sys.executable, "-m", "videozoo", "serve", "--model", MODEL, "--weights", str(missing), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "failed to load" in last and "missing.pth" in last and "Traceback" not in proc.stderr


# -- the size limit -----------------------------------------------------------------------------------


def test_upload_over_the_limit_is_413(server, videos):
    big = os.urandom(int(2.5 * LIMIT_MB * 2**20))
    r = server.client.post("/v1/predict", files={"video": ("big.mp4", big)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    assert f"{LIMIT_MB:g} MiB" in r.json()["error"]["message"]
    # The server stays healthy and serves the next request.
    assert server.predict(videos[0]).status_code == 200
    assert_healthy(server)


def test_limit_is_checked_while_streaming(server):
    """A chunked upload (no Content-Length) is never stored beyond the limit, even while it still arrives."""
    limit = int(LIMIT_MB * 2**20)
    largest = [0]
    boundary = "vzboundary"

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="long.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        sent = 0
        chunk = os.urandom(64 * 1024)
        while sent < 3 * limit:
            yield chunk
            sent += len(chunk)
            if sent % (256 * 1024) == 0:
                time.sleep(0.02)  # let the server catch up, then look at what it stored
                largest[0] = max([largest[0], *(p.stat().st_size for p in server.stored() if p.exists())])
        yield f"\r\n--{boundary}--\r\n".encode()

    r = server.client.post(
        "/v1/predict", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 413
    assert largest[0] <= limit, f"{largest[0]} bytes stored for a limit of {limit}"
    assert_healthy(server)


def test_declared_huge_upload_is_refused_before_it_is_sent(server):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        reply = s.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert_healthy(server)


# -- concurrency and the queue ------------------------------------------------------------------------


def test_eight_concurrent_uploads_all_answer_correctly(server, engine, videos):
    def one(video):
        with httpx.Client(base_url=server.url, timeout=300) as client:
            return client.post("/v1/predict", files={"video": (video.name, video.read_bytes())}, data={"top_k": "3"})

    with ThreadPoolExecutor(8) as ex:
        replies = list(ex.map(one, videos))
    for video, r in zip(videos, replies, strict=True):
        assert r.status_code == 200, r.text
        want = engine.predict(video).entry(MODEL, top_k=3)
        want["video"] = video.name
        assert_same_entry(r.json(), want)
    assert_healthy(server)


def test_full_queue_is_503_with_retry_after(server, videos):
    pool = server.pool
    with contextlib.ExitStack() as held:
        for _ in range(pool.workers + pool.max_queue):  # every place taken
            held.enter_context(pool.admit())
        r = server.predict(videos[0])
        assert r.status_code == 503 and r.json()["error"]["code"] == "busy"
        assert int(r.headers["Retry-After"]) >= 1
    assert server.predict(videos[0]).status_code == 200
    assert_healthy(server)


# -- the page -----------------------------------------------------------------------------------------


def test_page_is_self_contained(server):
    r = server.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'id="predict"' in html and 'id="file"' in html and "/v1/predict" in html
    # Nothing is fetched from elsewhere: no external scripts, styles, fonts or images.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", html, re.I)
    doc = server.client.get("/openapi.json").json()
    body = doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"video", "model", "views", "top_k"} <= set(body["properties"])
    assert server.client.get("/docs").status_code == 200


# -- SIGTERM / Ctrl-C with a real process -------------------------------------------------------------


def _start_cli_server(weights: str, tmpdir: Path, *extra: str) -> tuple[subprocess.Popen, str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "videozoo",
            "serve",
            "--model",
            MODEL,
            "--weights",
            weights,
            "--port",
            "0",
            "--precision",
            "fp32",
            "--log-level",
            "warning",
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        url = url or (m.group(1) if m else None)
        if "ready:" in line:
            break
    if url is None or not any("ready:" in ln for ln in lines):
        proc.kill()
        raise AssertionError("the server did not start:\n" + "".join(lines) + proc.stderr.read())
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    return proc, url, lines


@pytest.mark.parametrize(
    "sig, grace, views",
    [
        (signal.SIGTERM, "0.5", "10x3"),  # the running request outlasts the grace period: abandoned
        (signal.SIGINT, "3", "2x3"),  # it finishes within it
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_stops_cleanly(weights, videos, tmp_path, sig, grace, views):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc, url, lines = _start_cli_server(weights, tmpdir, "--shutdown-timeout", grace)
    try:

        def one(video):
            try:
                with httpx.Client(base_url=url, timeout=60) as client:
                    return client.post(
                        "/v1/predict", files={"video": (video.name, video.read_bytes())}, data={"views": views}
                    ).status_code
            except httpx.TransportError:
                return "closed"

        with ThreadPoolExecutor(4) as ex:
            futures = [ex.submit(one, v) for v in videos[:4]]
            time.sleep(1.0)  # requests in flight and queued
            t0 = time.monotonic()
            proc.send_signal(sig)
            rc = proc.wait(timeout=30)
            stopped = time.monotonic() - t0
            outcomes = [f.result(timeout=60) for f in futures]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, "".join(lines)
    # The grace period for the running request, then it is cancelled; the margin is for a loaded machine.
    assert stopped < 12, f"took {stopped:.1f} s to stop:\n" + "".join(lines)
    assert all(o in (200, 503, "closed") for o in outcomes), (outcomes, "".join(lines))
    # Nothing of the server's is left: no file at all, no folder but PyTorch's own (empty) compile
    # cache folder, which importing torch._dynamo (torch.load does) makes in TMPDIR.
    left = [p for p in tmpdir.rglob("*") if p.is_file() or not p.name.startswith("torchinductor_")]
    assert left == [], f"left behind: {left}"
    assert "Traceback" not in "".join(lines)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--port", "70000"], "port"),
        (["--max-upload-mb", "0"], "max-upload-mb"),
        (["--workers", "0"], "workers"),
        (["--max-queue", "-1"], "max-queue"),
        (
            ["--model", MODEL, "--model", SECOND, "--weights", "none", "--weights", "none", "--weights", "none"],
            "--weights",
        ),
        (["--model", MODEL, "--model", MODEL], "each model once"),
    ],
)
def test_serve_usage_errors_exit_2(argv, says, capsys):
    from videozoo.cli.main import main

    with pytest.raises(SystemExit) as stop:  # argparse's own errors
        raise SystemExit(main(["serve", *argv]))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err.splitlines()[-1] and says in err.splitlines()[-1], err


def test_serve_unknown_model_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "videozoo", "serve", "--model", "nope_model", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "nope_model" in proc.stderr.splitlines()[-1]


# -- the page in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium installed (apt-get install chromium) for the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (in the test extra) is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_browser_predicts_and_shows_errors(server, engine, browser, videos, tmp_path):
    video = videos[4]
    want = engine.predict(video).top_k(5)
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    page.set_default_timeout(60_000)
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.set_input_files("#file", str(video))
    page.wait_for_function("!document.getElementById('predict').disabled")
    page.click("#predict")
    page.wait_for_selector("#results li")
    labels = page.locator("#results li .label").all_inner_texts()
    assert labels == [r["label"] for r in want], labels
    first = page.locator("#results li .prob").first.inner_text()
    assert first == f"{100 * want[0]['probability']:.1f}%"
    shot = Path(os.environ.get("VIDEOZOO_SCREENSHOT_DIR", tmp_path)) / "serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # A file that is not a video: the server's message is shown, no results.
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video\n" * 20)
    page.set_input_files("#file", str(bad))
    page.click("#predict")
    page.wait_for_selector("#message.error")
    assert "notes.txt" in page.inner_text("#message") and page.locator("#results li").count() == 0
    page.screenshot(path=str(shot.with_name("serve-page-error.png")))

    # Too large for the server: refused in the page before any upload.
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(b"\0" * int(1.5 * LIMIT_MB * 2**20))
    page.set_input_files("#file", str(huge))
    page.wait_for_selector("#message.error")
    assert "up to" in page.inner_text("#message") and page.locator("#predict").is_disabled()
    page.close()
    assert_healthy(server)


def test_browser_timeline_tab(server, browser, long_video):
    if not _timeline_available():
        pytest.skip("this installation has no timeline job (videozoo.jobs.timeline)")
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    page.set_default_timeout(60_000)
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.set_input_files("#file", str(long_video))
    page.click("#tab-timeline")
    page.fill("#stride", "0.5")
    page.wait_for_function("!document.getElementById('run-timeline').disabled")
    page.click("#run-timeline")
    page.wait_for_selector("#timeline svg polyline", state="attached")
    assert page.locator("#timeline svg rect").count() >= 1  # the segments
    assert page.locator("#timeline table tr").count() >= 2  # header + one row per segment
    shot = Path(os.environ.get("VIDEOZOO_SCREENSHOT_DIR", long_video.parent)) / "serve-timeline.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    assert_healthy(server)


# -- a zero-shot model: labels per request --------------------------------------------------------------

ZERO_SHOT = "xclip_small"  # a small X-CLIP in the official layout (tests/xclip_small.py)


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory):
    """A server of the small X-CLIP and a classifier, and the X-CLIP weights folder."""
    from xclip_small import register_small, write_small

    with pytest.MonkeyPatch.context() as mp:
        register_small(mp)
        folder = write_small(tmp_path_factory.mktemp("xclip") / "small")
        config = ServeConfig(
            models=(ServedModel(ZERO_SHOT, folder), ServedModel(MODEL, None)),
            workers=1,
            precision="fp32",
            temp_root=str(tmp_path_factory.mktemp("servetmp")),
        )
        live = LiveServer(config)
        yield live, folder
        live.stop()


def test_zero_shot_predict_takes_labels_per_request(zero_shot, videos):
    live, folder = zero_shot
    models = {m["name"]: m for m in live.client.get("/v1/models").json()["models"]}
    assert models[ZERO_SHOT]["zero_shot"] is True and models[ZERO_SHOT]["classes"] is None
    assert models[MODEL]["zero_shot"] is False
    for labels, template in [("dog running,person cooking,car", None), ("a boat,a kite", "a clip of {}")]:
        fields = {"model": ZERO_SHOT, "labels": labels, "top_k": 9, **({"template": template} if template else {})}
        r = live.predict(videos[1], **fields)
        assert r.status_code == 200, r.text
        want = videozoo.classify(
            [videos[1]],
            model=ZERO_SHOT,
            labels=labels,
            template=template or "a video of {}.",
            weights=folder,
            precision="fp32",
            top_k=9,
        )[0]
        assert r.json()["video"] == videos[1].name
        assert_same_entry(r.json(), {**want, "video": videos[1].name})
        assert sorted(x["label"] for x in r.json()["top_k"]) == sorted(labels.split(","))
    assert_healthy(live)


@pytest.mark.parametrize(
    "fields, status, code, says",
    [
        ({"model": ZERO_SHOT}, 400, "missing_labels", "send its classes as the form field labels"),
        ({"model": ZERO_SHOT, "labels": "a,a"}, 400, "bad_field", "labels='a,a': labels given more than once"),
        ({"model": ZERO_SHOT, "labels": " , "}, 400, "bad_field", "no labels given"),
        ({"model": ZERO_SHOT, "labels": "a,b", "template": "x"}, 400, "bad_field", "template='x'"),
        ({"model": MODEL, "labels": "a,b"}, 400, "bad_field", f"{MODEL} has fixed classes; labels written per"),
        ({"model": ZERO_SHOT, "labels": ",".join(f"l{i}" for i in range(1001))}, 400, "bad_field", "at most 1000"),
    ],
)
def test_zero_shot_bad_labels(zero_shot, videos, fields, status, code, says):
    live, _ = zero_shot
    r = live.predict(videos[0], **fields)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and says in r.json()["error"]["message"], r.text
    if fields["model"] == MODEL:
        assert ZERO_SHOT in r.json()["error"]["message"]  # the zero-shot models served are named


def test_zero_shot_timeline_and_none_threshold(zero_shot, long_video):
    if not _timeline_available():
        pytest.skip("this installation has no timeline job (videozoo.jobs.timeline)")
    live, folder = zero_shot

    def post(**fields):
        return live.client.post(
            "/v1/timeline", files={"video": ("long.mp4", long_video.read_bytes())}, data={"model": ZERO_SHOT, **fields}
        )

    r = post(labels="dog running,car", stride="0.5")
    assert r.status_code == 200, r.text
    want = videozoo.timeline(
        str(long_video), model=ZERO_SHOT, weights=folder, labels="dog running,car", precision="fp32", stride=0.5
    ).to_json()
    got = r.json()
    assert [w["top_k"][0]["label"] for w in got["windows"]] == [w["top_k"][0]["label"] for w in want["windows"]]
    assert [s["label"] for s in got["segments"]] == [s["label"] for s in want["segments"]]
    r = post(labels="dog running,car", stride="0.5", none_threshold="0.99")
    assert r.status_code == 200, r.text
    assert [s["label"] for s in r.json()["segments"]] == ["none"] and r.json()["none_threshold"] == 0.99
    assert all(w["none"] for w in r.json()["windows"])
    for fields, says in [
        ({"labels": "a,b", "none_threshold": "0.5"}, "must be above 1/2"),
        ({"labels": "a,b", "none_threshold": "x"}, "expected a probability"),
        ({"none_threshold": "0.9"}, "send its classes"),
        ({"model": MODEL, "none_threshold": "0.9"}, "only for a zero-shot model"),
    ]:
        r = post(**fields)
        assert r.status_code == 400 and says in r.json()["error"]["message"], r.text
    assert_healthy(live)


def test_openapi_documents_the_label_fields(zero_shot):
    live, _ = zero_shot
    paths = live.client.get("/openapi.json").json()["paths"]

    def props(path):
        return paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]

    assert {"labels", "template"} <= set(props("/v1/predict"))
    assert {"labels", "template", "none_threshold"} <= set(props("/v1/timeline"))
    assert "zero-shot" in props("/v1/predict")["labels"]["description"]


def test_browser_types_labels_for_a_zero_shot_model(zero_shot, browser, videos):
    live, folder = zero_shot
    page = browser.new_page(viewport={"width": 1100, "height": 720})
    page.set_default_timeout(60_000)
    page.goto(live.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", ZERO_SHOT)
    page.wait_for_selector("#labels", state="visible")
    page.set_input_files("#file", str(videos[1]))
    assert page.locator("#predict").is_disabled()  # no labels typed yet
    page.fill("#labels", "dog running, person cooking, car")
    page.wait_for_function("!document.getElementById('predict').disabled")
    page.click("#predict")
    page.wait_for_selector("#results li")
    shown = page.locator("#results li .label").all_inner_texts()
    assert sorted(shown) == ["car", "dog running", "person cooking"]
    page.select_option("#model", MODEL)  # a classifier: no labels to type
    assert page.locator("#labels").is_hidden() and not page.locator("#predict").is_disabled()
    page.close()
    assert_healthy(live)
