"""Exports: every fixture model as ONNX (in onnxruntime) and as a torch.export program gives the eager
model's outputs; the files describe themselves; the command fails clearly; the engine's onnxruntime
backend predicts what the eager engine predicts.

The per-model parity runs on reduced clips (a few frames at a 64-pixel crop, cut from the fixture
input): what an export can get wrong is the graph, which is the same at every size. Each model is
traced once, with a dynamic batch, and checked at batch 1 and 2. Full-size parity of the seed models
is the slow test at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

import videozoo
from fixtures_util import FIXTURES, deterministic_state, fixture_input, load_fixture, write_official_checkpoint
from videozoo.cli.main import main
from videozoo.data.input_config import InputConfig
from videozoo.models.factory import checkpoint_meta, model_from_checkpoint
from videozoo.weights.checkpoint import Checkpoint

ort = pytest.importorskip("onnxruntime", reason="the export extra (pip install videozoo[export]) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (pip install videozoo[export]) is not installed")

from videozoo.export import ExportError, load_program, read_onnx_meta  # noqa: E402
from videozoo.export.files import write_onnx, write_program  # noqa: E402
from videozoo.export.graph import prepare, trace  # noqa: E402

TOL = 1e-4
CROP = 64
# Frames of the reduced clip (the fast pathway's for SlowFast); the rest take min(T, 8).
FRAMES = {
    "mvit_base_16x4": 4,
    "x3d_xs": 4,
    "x3d_s": 4,
    "x3d_m": 4,
    "x3d_l": 4,
    "s3d": 16,
    "slowfast_r50": 16,
    "slowfast_r101": 16,
    "slowfast_16x8_r101_50_50": 16,
}
# Two fixture models run by default: the two-pathway model, and the one with non-local attention (X3D is the
# command tests' subject, MViT a 3-block variant's); the other fixture models are marked slow:
# each trace-and-convert costs seconds however small the clip.
FAST_PARITY = {"slowfast_r50", "i3d_r50_nl_32x2"}
FIXTURE_MODELS = sorted({load_fixture(p.stem)["model"] for p in FIXTURES.glob("*.json")}) if FIXTURES.is_dir() else []


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def _reduced_input(fx: dict, frames: int, crop: int):
    """The fixture input cut to `frames` x `crop` x `crop` (SlowFast's slow pathway re-taken by the fixture rule)."""
    x = fixture_input({"input": {"shape": fx["input"]["shape"], "slow_alpha": None}})
    x = x[:, :, :frames, :crop, :crop].contiguous()
    alpha = fx["input"].get("slow_alpha")
    if alpha:
        return [x[:, :, torch.linspace(0, frames - 1, frames // alpha).long()].contiguous(), x]
    return x


def _batch2(x):
    # A second, different clip: the first mirrored.
    return [torch.cat([t, t.flip(-1)]) for t in x] if isinstance(x, list) else torch.cat([x, x.flip(-1)])


def _as_args(x) -> tuple[torch.Tensor, ...]:
    return tuple(x) if isinstance(x, list) else (x,)


def _fixture_model(name: str, tmp_path=None) -> tuple[torch.nn.Module, dict]:
    """The model with the fixture's deterministic weights: through the official file when `tmp_path`
    is given, else handed to the loader in memory (the files themselves are test_parity's subject)."""
    fx = load_fixture(name)
    if tmp_path is not None:
        suffix = ".pkl" if "Caffe2" in fx["checkpoint_format"] else ".pth"
        path = write_official_checkpoint(fx, tmp_path / f"{name}{suffix}")
        return videozoo.create_model(name, weights=str(path)), fx
    fmt = fx["checkpoint_format"]
    kind = "caffe2" if "Caffe2" in fmt else "torchvision" if fmt.startswith("torchvision") else "pyth"
    ckpt = Checkpoint(kind, deterministic_state(fx), source=f"{name} fixture")
    return model_from_checkpoint(videozoo.get_spec(name), ckpt), fx


def _reduce_mvit(model, frames: int, crop: int):
    """MViT's position embeddings fix its clip: a copy for `frames` x `crop` x `crop` keeping every
    other weight and the first rows of the learned position tables."""
    small = videozoo.get_spec(model.model_name).build(num_frames=frames, crop_size=crop).eval()
    own = small.state_dict()
    state = {
        k: v[:, : own[k].shape[1]] if k.startswith("cls_positional_encoding.pos_embed") else v
        for k, v in model.state_dict().items()
    }
    small.load_state_dict(state)
    small.model_name, small.class_names = model.model_name, model.class_names
    small.input_config = dataclasses.replace(model.input_config, num_frames=frames, crop_size=crop, short_side=crop)
    return small


def _export_both(model, x, tmp):
    """Trace once and write both files, as `videozoo.export` writes each; open them as a user would."""
    clip = model.input_config
    meta = dataclasses.replace(checkpoint_meta(model), input=clip)
    program = trace(prepare(model, clip), clip)
    onnx_path = write_onnx(program, tmp / "model.onnx", meta=meta)
    pt2_path = write_program(program, tmp / "model.pt2", meta=meta)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    loaded, loaded_meta = load_program(pt2_path)
    return model, x, session, loaded.module(), loaded_meta, onnx_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (eager model, reduced fixture input, ONNX session, loaded program, its record, ONNX path)."""

    def get(name: str):
        model, fx = _fixture_model(name)
        frames = FRAMES.get(name, min(8, fx["input"]["shape"][2]))
        if getattr(type(model), "fixed_input_size", False):
            model = _reduce_mvit(model, frames, CROP)
        model.input_config = dataclasses.replace(model.input_config, num_frames=frames, crop_size=CROP, short_side=CROP)
        return _export_both(model, _reduced_input(fx, frames, CROP), tmp_path_factory.mktemp(name))

    return get


@pytest.mark.skipif(not FIXTURE_MODELS, reason=f"reference fixtures not found at {FIXTURES}")
@pytest.mark.parametrize(
    "name", [n if n in FAST_PARITY else pytest.param(n, marks=pytest.mark.slow) for n in FIXTURE_MODELS]
)
def test_export_parity(name, exported):
    _check_parity(*exported(name))


def test_export_parity_small_mvit(tmp_path):
    """MViT's pooled attention (query, key/value and shortcut pooling, the widening projection) in 3 blocks."""
    torch.manual_seed(0)
    spec = videozoo.get_spec("mvit_base_16x4")
    model = spec.build(num_frames=4, crop_size=CROP, depth=3, stage_starts=(1, 2)).eval()
    model.model_name, model.class_names = spec.name, None
    model.input_config = dataclasses.replace(spec.input, num_frames=4, crop_size=CROP, short_side=CROP)
    x = torch.randn(1, 3, 4, CROP, CROP, generator=torch.Generator().manual_seed(0))
    _check_parity(*_export_both(model, x, tmp_path))


def _check_parity(model, x1, session, program, meta, onnx_path) -> None:
    name = model.model_name
    names = [i.name for i in session.get_inputs()]
    assert names == (["slow", "fast"] if isinstance(x1, list) else ["video"])
    assert [o.name for o in session.get_outputs()] == ["logits", "scores", "features"]
    assert session.get_inputs()[0].shape[0] == "batch"  # one file for every batch size
    assert meta == read_onnx_meta(onnx_path) and meta.model == name and meta.input == model.input_config
    for x in (x1, _batch2(x1)):
        with torch.inference_mode():
            ref = dict(zip(("logits", "scores", "features"), model.inference_outputs(x), strict=True))
            assert torch.equal(ref["logits"], model(x))
            got_program = program(*_as_args(x))
        got_onnx = session.run(None, {n: t.numpy() for n, t in zip(names, _as_args(x), strict=True)})
        for i, key in enumerate(ref):
            assert got_onnx[i].shape == tuple(ref[key].shape)
            assert _rel_err(torch.from_numpy(got_onnx[i]), ref[key]) <= TOL, f"onnx {key} at batch {len(ref[key])}"
            assert _rel_err(got_program[key], ref[key]) <= TOL, f"program {key} at batch {len(ref[key])}"


# -- the command --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """An x3d_xs checkpoint (the fixture's weights) recording a reduced clip, so exports and runs are quick."""
    tmp = tmp_path_factory.mktemp("ckpt")
    if FIXTURES.is_dir():
        model = _fixture_model("x3d_xs")[0]
    else:
        torch.manual_seed(0)
        model = videozoo.create_model("x3d_xs")
    model.input_config = dataclasses.replace(model.input_config, num_frames=4, crop_size=CROP, short_side=72)
    return videozoo.save_model(model, tmp / "x3d_xs_small.pth")


@pytest.fixture(scope="module")
def small_onnx(small_checkpoint):
    out = small_checkpoint.with_suffix(".onnx")
    assert main(["export", "x3d_xs", "--weights", str(small_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_cli_export_program_runs_like_the_model(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.pt2"
    assert (
        main(
            [
                "export",
                "x3d_xs",
                "--weights",
                str(small_checkpoint),
                "--format",
                "exported-program",
                "--out",
                str(out),
                "--batch",
                "3",
            ]
        )
        == 0
    )
    assert str(out) in capsys.readouterr().out
    program, meta = load_program(out)
    model = videozoo.create_model("x3d_xs", weights=str(small_checkpoint))
    assert meta == checkpoint_meta(model)  # the record: clip, classes, version
    x = torch.randn(3, 3, 4, CROP, CROP, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
    assert _rel_err(program.module()(x)["logits"], ref) <= TOL
    # --batch 3 fixes the batch: the program's input guard refuses 2 (an AssertionError in recent
    # torch, a RuntimeError in older releases).
    with pytest.raises((AssertionError, RuntimeError)):
        program.module()(x[:2])


def test_onnx_file_is_self_describing(small_onnx, small_checkpoint):
    import onnx

    proto = onnx.load(str(small_onnx))
    props = {p.key: p.value for p in proto.metadata_props}
    record = json.loads(props["videozoo_meta"])
    assert record["model"] == "x3d_xs" and record["videozoo_version"] == videozoo.__version__
    assert record["input"]["crop_size"] == CROP and len(record["class_names"]) == 400
    assert (
        InputConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["input"].items()})
        == videozoo.create_model("x3d_xs", weights=str(small_checkpoint)).input_config
    )
    assert proto.producer_name == "videozoo"


def _error(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["export", "no_such_model"], "unknown model 'no_such_model'"),
        (["export", "x3d_xs", "--weights", "/no/such/file.pth"], "/no/such/file.pth: no such checkpoint file"),
        (
            ["export", "x3d_xs", "--weights", "none", "--out", "/no/such/dir/m.onnx"],
            "--out /no/such/dir/m.onnx: the folder",
        ),
        (["export", "x3d_xs", "--weights", "none", "--out", "/"], "is a directory"),
        (["export", "x3d_xs", "--weights", "none", "--batch", "zero"], "--batch 'zero'"),
        (["export", "x3d_xs", "--weights", "none", "--batch", "0"], "--batch '0'"),
        (["export", "x3d_xs", "--weights", "none", "--opset", "11"], "--opset 11"),
        (["export", "x3d_xs", "--weights", "none", "--format", "exported-program", "--opset", "18"], "--opset applies"),
    ],
)
def test_cli_export_errors(argv, says, capsys):
    code, err = _error(argv, capsys)
    assert code == 2 and says in err and "Traceback" not in err
    assert err.startswith("videozoo export: error:") and err.count("\n") == 1


def test_cli_export_unreadable_weights(tmp_path, capsys):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint at all")
    code, err = _error(["export", "x3d_xs", "--weights", str(bad), "--out", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    "argv, package",
    [
        (["export", "x3d_xs", "--weights", "none", "--format", "onnx"], "onnxscript"),
        (["predict", "v.mp4", "--model", "x3d_xs", "--weights", "{onnx}"], "onnxruntime"),
    ],
)
def test_missing_extra_is_one_clear_error(argv, package, small_onnx, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    code, err = _error([a.format(onnx=small_onnx) for a in argv], capsys)
    assert code == 2 and "pip install videozoo[export]" in err and "Traceback" not in err


def test_cli_rejects_unknown_format(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "x3d_xs", "--format", "tflite"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_python_api_errors_before_tracing(tmp_path):
    with pytest.raises(ExportError, match="--format 'tflite'"):
        videozoo.export("x3d_xs", format="tflite")
    with pytest.raises(ExportError, match="model_name"):
        videozoo.export(torch.nn.Linear(2, 2), out=tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="--precision 'bf16'"):
        videozoo.export("x3d_xs", precision="bf16", out=tmp_path / "m.onnx")


# -- the engine's onnxruntime backend ----------------------------------------------------------


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from videogen import make_video

    return str(make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=48, width=96, height=72, pattern="noise"))


def test_engine_onnxruntime_equals_eager(small_onnx, small_checkpoint, video):
    # fp32 on both sides: `auto` is bf16 on a CPU with native bf16, and an fp32 export runs fp32.
    eager = videozoo.Engine.build("x3d_xs", weights=str(small_checkpoint), views="2x3", batch_size=4, precision="fp32")
    onnx = videozoo.Engine.build("x3d_xs", weights=str(small_onnx), views="2x3", batch_size=4)
    assert (eager.backend, onnx.backend) == ("torch", "onnxruntime")
    assert onnx.input == eager.input and onnx.class_names == eager.class_names and onnx.precision.name == "fp32"
    loaded = eager.load(video)
    assert loaded.views.shape == (6, 3, 4, CROP, CROP)
    for output in ("scores", "logits", "features"):
        assert _rel_err(onnx.forward(loaded.views, output), eager.forward(loaded.views, output)) <= TOL, output


def test_cli_predict_onnxruntime_equals_eager(small_onnx, small_checkpoint, video, capsys):
    def run(weights, *extra):
        argv = [
            "predict",
            video,
            "--model",
            "x3d_xs",
            "--weights",
            str(weights),
            "--views",
            "2x1",
            "--top-k",
            "400",
            "--json",
            *extra,
        ]
        assert main(argv) == 0
        captured = capsys.readouterr()
        return json.loads(captured.out), captured.err

    (ref, _), (got, err) = run(small_checkpoint, "--precision", "fp32"), run(small_onnx, "--backend", "onnxruntime")
    assert "(onnxruntime)" in err
    ref_p = {r["label"]: r["probability"] for r in ref["top_k"]}
    got_p = {r["label"]: r["probability"] for r in got["top_k"]}
    assert ref_p.keys() == got_p.keys()
    top = max(ref_p.values())
    assert max(abs(ref_p[k] - got_p[k]) for k in ref_p) <= TOL * top


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"weights": "kinetics400", "backend": "onnxruntime"}, "runs an exported ONNX file"),
        ({"weights": "{onnx}", "backend": "torch"}, "runs with --backend onnxruntime"),
        ({"weights": "{onnx}", "backend": "tensorrt"}, "--backend 'tensorrt'"),
        ({"weights": "{onnx}", "precision": "bf16"}, "--precision bf16"),
    ],
)
def test_engine_onnxruntime_errors(kwargs, says, small_onnx):
    kwargs = {k: v.format(onnx=small_onnx) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=says):
        videozoo.Engine.build("x3d_xs", **kwargs)


def test_engine_onnxruntime_checks_the_file(small_onnx, tmp_path):
    with pytest.raises(ValueError, match="holds an export of 'x3d_xs', not 'x3d_s'"):
        videozoo.Engine.build("x3d_s", weights=str(small_onnx))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(RuntimeError, match="junk.onnx: onnxruntime cannot load"):
        videozoo.Engine.build("x3d_xs", weights=str(junk))


# -- full size ----------------------------------------------------------------------------------

SEED_MODELS = ["slow_r50", "slowfast_r50", "i3d_r50_32x2", "r3d_18", "mc3_18", "r2plus1d_18"]


@pytest.mark.slow
@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"reference fixtures not found at {FIXTURES}")
@pytest.mark.parametrize("name", SEED_MODELS)
def test_full_size_export_parity(name, tmp_path):
    """The seed models at their fixture's full clip: both files give the eager logits (and the reference's)."""
    model, fx = _fixture_model(name, tmp_path)
    x = fixture_input(fx)
    args = _as_args(x)
    # The fixture's clip (i3d_r50_32x2's is its 224 training crop, not the 256 eval crop).
    frames, crop = fx["input"]["shape"][2:4]
    clip = dataclasses.replace(model.input_config, num_frames=frames, crop_size=crop)
    onnx_path = videozoo.export(model, format="onnx", out=tmp_path / "m.onnx", clip=clip)
    pt2_path = videozoo.export(model, format="exported-program", out=tmp_path / "m.pt2", clip=clip)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    program = load_program(pt2_path)[0].module()
    names = [i.name for i in session.get_inputs()]
    reference = torch.tensor(fx["output_float64"], dtype=torch.float64)
    for batch in (args, tuple(torch.cat([t, t.flip(-1)]) for t in args)):
        with torch.inference_mode():
            ref = model(list(batch) if len(batch) == 2 else batch[0])
            got_program = program(*batch)["logits"]
        got_onnx = torch.from_numpy(
            session.run(["logits"], {n: t.numpy() for n, t in zip(names, batch, strict=True)})[0]
        )
        assert _rel_err(got_onnx, ref) <= TOL and _rel_err(got_program, ref) <= TOL
        if fx["output_kind"] == "logits":
            assert _rel_err(got_onnx[0], reference) <= TOL


@pytest.mark.slow
def test_fp16_export_runs_in_onnxruntime_and_the_engine(small_checkpoint, video, tmp_path):
    out = tmp_path / "half.onnx"
    assert main(["export", "x3d_xs", "--weights", str(small_checkpoint), "--precision", "fp16", "--out", str(out)]) == 0
    engine = videozoo.Engine.build("x3d_xs", weights=str(out), views="1x3")
    assert engine.precision.name == "fp16" and engine.model.dtype == torch.float16
    eager = videozoo.Engine.build("x3d_xs", weights=str(small_checkpoint), views="1x3", precision="fp32")
    loaded = eager.load(video)
    # fp16 keeps about 3 significant digits through the network.
    assert _rel_err(engine.forward(loaded.views, "logits"), eager.forward(loaded.views, "logits")) <= 1e-2
    with pytest.raises(ValueError, match="exported in fp16"):
        videozoo.Engine.build("x3d_xs", weights=str(out), precision="fp32")


def test_evaluate_and_features_run_the_onnx_file_like_the_eager_model(small_onnx, small_checkpoint, video, tmp_path):
    from videozoo.jobs.evaluate import EvalConfig, evaluate
    from videozoo.jobs.features import FeatureConfig, extract_features

    data = tmp_path / "list.txt"
    data.write_text(f"{video} abseiling\n")
    runs = {}
    for name, weights, extra in (
        ("eager", small_checkpoint, {"precision": "fp32"}),
        ("onnx", small_onnx, {"backend": "onnxruntime"}),
    ):
        out = tmp_path / name
        metrics = evaluate(
            EvalConfig(
                model="x3d_xs",
                data=str(data),
                out=str(out / "eval"),
                weights=str(weights),
                views="2x1",
                workers=0,
                **extra,
            )
        )
        extract_features(
            FeatureConfig(
                model="x3d_xs",
                out=str(out / "feat"),
                videos=[video],
                weights=str(weights),
                views="2x1",
                workers=0,
                **extra,
            )
        )
        record = json.loads((out / "eval" / "predictions.jsonl").read_text().splitlines()[0])
        runs[name] = (metrics, record, np.load(out / "feat" / "clip_features.npy"))
    (m_e, r_e, f_e), (m_o, r_o, f_o) = runs["eager"], runs["onnx"]
    assert m_o["precision"] == "fp32" and r_o["video_top5"] == r_e["video_top5"]
    assert m_o["video_top1"] == m_e["video_top1"]
    assert _rel_err(torch.from_numpy(f_o), torch.from_numpy(f_e)) <= TOL
