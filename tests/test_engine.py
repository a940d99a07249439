"""The engine: view plans, precision choice, micro-batching, and the jobs sharing one path."""

import json
import subprocess
import sys
import warnings

import pytest
import torch

import videozoo
from videogen import make_video
from videozoo.data.plan import ViewPlan, ViewPlanError
from videozoo.engine import Engine, precision as precision_mod, resolve_device, resolve_precision

MODEL = "x3d_xs"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(make_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=60, width=96, height=72, pattern="noise"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return videozoo.create_model(MODEL)


# -- view plans ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, clips, crops",
    [
        ("1x1", 1, 1),
        ("10x3", 10, 3),
        ("5x1", 5, 1),
        (" 2X3 ", 2, 3),
        ((4, 3), 4, 3),
    ],
)
def test_view_plan_parses(text, clips, crops):
    plan = ViewPlan.parse(text)
    assert (plan.clips, plan.crops) == (clips, crops) and str(plan) == f"{clips}x{crops}"
    assert ViewPlan.parse(plan) is plan


@pytest.mark.parametrize(
    "text, says",
    [
        ("banana", "CLIPSxCROPS"),
        ("0x3", "at least one clip"),
        ("10x-1", "1 or 3 crops"),
        ("10x2", "1 or 3 crops"),
        ("", "CLIPSxCROPS"),
        ("3", "CLIPSxCROPS"),
        ("x3", "CLIPSxCROPS"),
        ("3x3x3", "CLIPSxCROPS"),
    ],
)
def test_view_plan_rejects(text, says):
    with pytest.raises(ViewPlanError, match=says):
        ViewPlan.parse(text)


def test_published_plan_resolves_from_the_input_config():
    cfg = videozoo.get_spec("slow_r50").input
    plan = ViewPlan.parse("published")
    assert not plan.resolved and str(plan) == "published"
    done = plan.resolve(cfg)
    assert (done.clips, done.crops) == (cfg.test_clips, cfg.test_crops) and not done.single_view
    assert ViewPlan(1, 1).single_view and not ViewPlan(1, 1, published=True).single_view


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "X.mp4", "--views", "banana"],
        ["predict", "X.mp4", "--views", "0x3"],
        ["predict", "X.mp4", "--views", "10x-1"],
        ["predict", "X.mp4", "--top-k", "0"],
        ["predict", "X.mp4", "--batch-size", "-2"],
        ["predict", "X.mp4", "--precision", "fp8"],
        ["evaluate", "--data", "d.txt", "--out", "o", "--views", "banana"],
        ["features", "X.mp4", "--out", "o", "--views", "1x2"],
    ],
)
def test_bad_arguments_exit_2_with_one_message(argv):
    proc = subprocess.run([sys.executable, "-m", "videozoo", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr.splitlines()[-1]


# -- precision -------------------------------------------------------------------------------------


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_takes_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: native)
    assert resolve_precision("auto", "cpu").name == expected


@pytest.mark.parametrize("cap, native", [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", None)])
def test_an_isa_cap_below_bf16_means_bf16_is_not_native(monkeypatch, cap, native):
    # ONEDNN_MAX_CPU_ISA keeps oneDNN's kernels below some instruction set; under AVX512_CORE_BF16
    # the bf16 instructions go unused even where the CPU has them.
    precision_mod.cpu_has_bf16.cache_clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    try:
        has = precision_mod.cpu_has_bf16()
        if native is None:  # no cap below bf16: the CPU's own flags decide
            assert has == (
                " avx512_bf16" in open("/proc/cpuinfo").read() or " amx_bf16" in open("/proc/cpuinfo").read()
            )
        else:
            assert has is native
    finally:
        precision_mod.cpu_has_bf16.cache_clear()


def test_explicit_bf16_on_emulating_cpu_warns_once_with_the_measured_slowdown(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(precision_mod, "_warned", False)
    monkeypatch.setattr(precision_mod, "emulated_bf16_slowdown", lambda: 41.7)
    with pytest.warns(precision_mod.EmulatedPrecisionWarning, match=r"emulated.*42x slower"):
        assert resolve_precision("bf16", "cpu").name == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_precision("bf16", "cpu")  # once only


def test_emulated_slowdown_is_measured():
    assert precision_mod.emulated_bf16_slowdown() > 0


@pytest.mark.parametrize(
    "precision, device, says", [("fp16", "cpu", "fp16 is for CUDA"), ("fp64", "cpu", "unknown precision")]
)
def test_bad_precision_is_refused(precision, device, says):
    with pytest.raises(ValueError, match=says):
        resolve_precision(precision, device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_one_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_precision_is_reported_in_json_results(video, tmp_path, model):
    weights = videozoo.save_model(model, tmp_path / "w.pth")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "videozoo",
            "predict",
            video,
            "--model",
            MODEL,
            "--weights",
            str(weights),
            "--json",
            "--precision",
            "fp32",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout.splitlines()[-1])
    assert entry["precision"] == "fp32" and entry["views"] == "1x1"
    assert "precision fp32" in proc.stderr


# -- batching --------------------------------------------------------------------------------------


def test_micro_batches_give_the_same_scores_as_one_batch(video, model, monkeypatch):
    whole = Engine(model, views="4x3", precision="fp32", batch_size=12)
    loaded = whole.load(video)
    ref = whole.forward(loaded.views)
    for b in (1, 5):
        part = Engine(model, views="4x3", precision="fp32", batch_size=b)
        torch.testing.assert_close(part.forward(loaded.views), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,views", [("x3d_xs", "4x3"), ("slowfast_r50", "2x3"), ("slow_r50", "3x1")])
def test_clip_views_transformed_on_demand_equal_the_whole(video, name, views):
    """Micro-batches cut across clips in every way take exactly the views made in one piece."""
    from videozoo.engine.views import ClipViews, load_views, take_views

    transform = videozoo.transform_for(name, views=views)
    whole = load_views(video, transform).views
    lazy = load_views(video, transform, lazy=True).views
    assert isinstance(lazy, ClipViews) and len(lazy) == len(whole[0] if isinstance(whole, list) else whole)
    n = len(lazy)
    for step in (1, 2, 4, 5, n):
        for start in range(0, n, step):
            got, want = take_views(lazy, start, start + step), take_views(whole, start, start + step)
            got, want = (x if isinstance(x, list) else [x] for x in (got, want))
            assert len(got) == len(want) and all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_predict_holds_one_clip_of_float_views_at_a_time(video, model):
    """Engine.predict (and map) transform clip by clip, with the scores of the views made at once."""
    engine = Engine(model, views="4x3", precision="fp32", batch_size=2)
    want = engine.forward(engine.load(video).views)
    got = engine.predict(video).view_scores
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_automatic_batch_size_follows_the_memory_budget(model, monkeypatch):
    monkeypatch.setenv("VIDEOZOO_BATCH_MEMORY_MB", "4096")
    big = Engine(model, views="10x3", precision="fp32").batch_size
    monkeypatch.setenv("VIDEOZOO_BATCH_MEMORY_MB", "1")
    small = Engine(model, views="10x3", precision="fp32").batch_size
    assert small == 1 and big > small


@pytest.mark.parametrize(
    "per_view_mb, device, expected",
    [
        (32, "cpu", 2),  # slow_r50: a pass's largest activation stays under 80 MB
        (40, "cpu", 2),  # slowfast_r50
        (128, "cpu", 1),  # csn_r101: always at least one view
        (6.8, "cpu", 8),  # x3d_xs: at most 8 on a CPU (16 is slower per view)
        (0.5, "cpu", 8),  # motion_tiny
        (0.5, "meta", 16),  # elsewhere only the memory budget and the overall limit count
        (32, "meta", 4),
    ],
)
def test_automatic_batch_size_on_a_cpu_keeps_passes_cache_sized(per_view_mb, device, expected):
    from videozoo.engine.batching import choose_batch_size

    assert choose_batch_size(int(per_view_mb * 2**20), 512 * 2**20, device=device) == expected


def test_view_bytes_estimate_matches_slow_r50_res2():
    # slow_r50's largest activation per view is 256 channels x 8 x 64 x 64 (res2 output), fp32.
    m = videozoo.create_model("slow_r50")
    engine = Engine(m, precision="fp32", optimize=False)
    assert engine.view_bytes == 256 * 8 * 64 * 64 * 4


# -- one path for every job ------------------------------------------------------------------------


def test_features_and_scores_come_from_the_same_views(video, model):
    engine = Engine(model, views="2x3", precision="fp32")
    loaded = engine.load(video)
    feats = engine.forward(loaded.views, "features")
    logits = engine.forward(loaded.views, "logits")
    with torch.inference_mode():
        from_features = engine.model.get_classifier()(feats)
    torch.testing.assert_close(from_features, logits, rtol=1e-4, atol=1e-5)
    scores = engine.predict_views(loaded)
    assert scores.view_scores.shape == (6, 400) and scores.views == "2x3" and scores.precision == "fp32"


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Weights and BatchNorm statistics drawn at random, so every activation is non-zero."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in model.modules():
            for name, p in mod.named_parameters(recurse=False):
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / p[0].numel()) ** 0.5)
                elif name == "weight":
                    p.copy_(torch.rand(p.shape, generator=gen) * 0.5 + 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 0.5)
    return model.eval()


# Families whose ReLUs follow convolutions directly, after in-place residual sums, and after
# depthwise convolutions; small clips (the fusion does not depend on the size).
FUSED = [
    ("slow_r50", (1, 3, 4, 64, 64), 20),
    ("slowfast_r50", [(1, 3, 2, 64, 64), (1, 3, 8, 64, 64)], 60),
    ("r2plus1d_18", (1, 3, 4, 64, 64), 20),
    ("x3d_xs", (1, 3, 4, 64, 64), 40),
    ("csn_r101", (1, 3, 4, 64, 64), 60),
]


@pytest.mark.parametrize("name,shape,at_least", FUSED, ids=[f[0] for f in FUSED])
def test_relu_fused_into_convolutions_computes_the_same(name, shape, at_least):
    from videozoo.engine.optimize import ConvReLU, optimize_for_inference, to_channels_last
    from videozoo.engine.precision import cpu_has_bf16

    model = _randomised(videozoo.create_model(name))
    gen = torch.Generator().manual_seed(1)
    x = [torch.randn(s, generator=gen) for s in shape] if isinstance(shape, list) else torch.randn(shape, generator=gen)
    plain = optimize_for_inference(model, x)
    fused = optimize_for_inference(model, x, fuse_relu=True)
    assert sum(isinstance(m, ConvReLU) for m in fused.modules()) >= at_least
    with torch.inference_mode():
        want, got = plain(to_channels_last(x)), fused(to_channels_last(x))
        assert want.abs().max() > 1  # a model computing zeros would prove nothing
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
        if not (cpu_has_bf16() or name == "x3d_xs"):
            return  # bf16 is emulated here, tens of times slower: the smallest model shows the fallback
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want, got = plain(to_channels_last(x)).float(), fused(to_channels_last(x)).float()
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))


class _SharedReLU(torch.nn.Module):
    """One in-place ReLU after two convolutions, the second of which is also used without it."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv3d(3, 4, 1)
        self.b = torch.nn.Conv3d(4, 4, 1)
        self.relu = torch.nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.relu(self.a(x))
        plain = self.b(y)  # no ReLU on this call of b
        return self.relu(self.b(y)) + plain


def test_a_shared_relu_stays_unless_every_convolution_feeding_it_is_fused():
    from videozoo.engine.optimize import ConvReLU, optimize_for_inference

    torch.manual_seed(0)
    model = _SharedReLU().eval()
    x = torch.randn(1, 3, 2, 4, 4)
    fused = optimize_for_inference(model, x, fold_bn=False, fuse_relu=True)
    assert not any(isinstance(m, ConvReLU) for m in fused.modules())
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x))
