"""`videozoo serve` says what it does: its OpenAPI schema allows no form field the server refuses
(schemathesis, generating requests from the schema, finds no mismatch and no 5xx), and a still
image is refused with 415 `not_a_video` unless `images=true` asks to score it as one frame."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'videozoo[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'videozoo[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx (in the test extra) is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (in the test extra) is not installed")

import uvicorn  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from PIL import Image  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from videogen import make_video  # noqa: E402
from videozoo.serve import ServeConfig, ServedModel, create_app  # noqa: E402

MODEL = "motion_tiny"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The app on uvicorn in a background thread, on a free port of 127.0.0.1."""
    config = ServeConfig(
        models=(ServedModel(MODEL, "default"),),
        max_queue=64,
        max_upload_mb=1.0,
        precision="fp32",
        threads=1,
        temp_root=str(tmp_path_factory.mktemp("servetmp")),
    )
    app = create_app(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    client = httpx.Client(base_url=url, timeout=60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if client.get("/health").status_code == 200:
                break
        time.sleep(0.2)
    else:
        raise RuntimeError("the test server did not become ready in 120 s")
    yield url, client
    client.close()
    server.should_exit = True
    thread.join(30)
    sock.close()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 24), (40 * i, 0, 0)) for i in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buf.getvalue()


def test_a_still_image_is_not_a_video(live):
    _, client = live
    files = {"video": ("pixel.png", _png(), "image/png")}
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert error["code"] == "not_a_video"
    assert (
        error["message"].startswith("pixel.png: a still image (PNG), not a video") and "images=true" in error["message"]
    )
    # Asked for: scored as a one-frame clip.
    r = client.post("/v1/predict", files=files, data={"images": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["short_video"] is True and r.json()["video"] == "pixel.png"
    r = client.post("/v1/predict", files=files, data={"images": "yes please"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_field" and "images=" in r.text


def test_animated_images_and_videos_still_work(live, tmp_path):
    _, client = live
    video = make_video(tmp_path / "clip.mp4", num_frames=24, width=64, height=48, fps=15)
    for name, body in (("anim.gif", _animated_gif()), ("clip.mp4", video.read_bytes())):
        r = client.post("/v1/predict", files={"video": (name, body)})
        assert r.status_code == 200, r.text
        assert r.json()["video"] == name and len(r.json()["top_k"]) == 5


def test_the_schema_allows_no_other_form_field(live):
    _, client = live
    spec = client.get("/openapi.json").json()
    for path in ("/v1/predict", "/v1/timeline"):
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert schema["additionalProperties"] is False and schema["required"] == ["video"]
        # What the schema lists is what the server takes; anything else is refused, as the schema says.
        r = client.post(path, files={"video": ("a.mp4", b"x")}, data={"colour": "red"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_field", r.text
        assert sorted(schema["properties"]) == sorted(["video", *_listed(r.json()["error"]["message"])])


@pytest.mark.parametrize(
    "served, listed, required",
    [
        ((MODEL,), {"model"}, ["video"]),  # classifiers only: they refuse labels, so the schema has none
        (("xclip_b32_8f",), {"model", "labels"}, ["video", "labels"]),  # zero-shot only: labels in every request
        ((MODEL, "xclip_b32_8f"), {"model", "labels"}, ["video"]),
    ],
)
def test_zero_shot_fields_are_listed_where_a_served_model_takes_them(served, listed, required):
    from videozoo.serve.app import _multipart_doc

    config = ServeConfig(models=tuple(ServedModel(m) for m in served))
    doc = _multipart_doc({"model": "a served model", "labels": "comma-separated labels"}, config)
    schema = doc["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(schema["properties"]) == {"video", *listed} and schema["required"] == required


def _listed(message: str) -> list[str]:
    # "unknown form field(s) colour; this endpoint takes video, model, top_k, views"
    return [w.strip() for w in message.split("takes video,")[1].split(",")]


@pytest.fixture(scope="module")
def api_schema(live):
    url, _ = live
    config = SchemathesisConfig.from_dict(
        {
            "checks": {
                # An upload made from the schema is bytes, not a video: the server's 415/422 for its
                # content is right; a 400 (a field the schema allows, refused) is a mismatch.
                "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "415", "422"]},
            }
        }
    )
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_mismatch(api_schema, mode):
    """Requests made from the schema (fitting it, then breaking it): every answer as the schema says,
    valid ones accepted, invalid ones refused with a 4xx, never a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/timeline", "/v1/models", "/health"}
    for operation in operations:
        if mode == "negative" and operation.method.upper() == "GET":
            continue  # no parameter or body to break

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(timeout=60)

        check()
