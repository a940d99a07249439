"""Write tests/data/vjepa2_reduced_reference.json: transformers' V-JEPA 2 classifier at a reduced size.

The full-size fixture (../shared/fixtures/transformers/vjepa2_l_ssv2.json) takes minutes on two cores;
this reference is the same network at a width of 64 (2 heads of 32 channels: rotary bands of 10
channels, whose 5 frequencies make the band layout matter, and 2 channels left unrotated), an
encoder MLP ratio of 3 (the probe's MLPs stay at 4), 6 frames at 64x64 (a 3x4x4 token grid) and
7 classes. Every tensor of `VJEPA2ForVideoClassification` (the predictor included, as the published
files hold it) is drawn by the fixtures' deterministic rule, written as an official-layout directory
(config.json + model.safetensors), loaded with `from_pretrained` (no missing, unexpected or
mismatched key) and run in float64 on the fixtures' input rule. Run with a Python that has
transformers:

    python scripts/vjepa2_reduced_reference.py [OUT]
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_util import deterministic_tensor  # noqa: E402

OUT = ROOT / "tests" / "data" / "vjepa2_reduced_reference.json"

CONFIG = {
    "architectures": ["VJEPA2ForVideoClassification"],
    "model_type": "vjepa2",
    "attention_dropout": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "crop_size": 64,
    "drop_path_rate": 0.0,
    "frames_per_clip": 6,
    "hidden_act": "gelu",
    "hidden_size": 64,
    "image_size": 64,
    "in_chans": 3,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-06,
    "mlp_ratio": 3.0,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "num_labels": 7,
    "num_pooler_layers": 2,
    "patch_size": 16,
    "pred_hidden_size": 32,
    "pred_mlp_ratio": 4.0,
    "pred_num_attention_heads": 2,
    "pred_num_hidden_layers": 1,
    "pred_num_mask_tokens": 10,
    "pred_zero_init_mask_tokens": True,
    "qkv_bias": True,
    "tubelet_size": 2,
}
INPUT_SHAPE = [2, 3, 6, 64, 64]  # (B, C, T, H, W)


def kind_of(key: str) -> str:
    module, _, leaf = key.rpartition(".")
    if leaf == "bias":
        return "bias"
    if leaf == "weight" and "norm" in module.rsplit(".", 1)[-1]:
        return "norm_weight"
    return "weight"


def main() -> None:
    from transformers import VJEPA2Config, VJEPA2ForVideoClassification

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    shapes = VJEPA2ForVideoClassification(VJEPA2Config(**CONFIG)).state_dict()
    manifest = [[k, list(v.shape), kind_of(k)] for k, v in shapes.items()]
    state = {k: deterministic_tensor(k, s, kind) for k, s, kind in manifest}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(CONFIG))
        save_file(state, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        model, info = VJEPA2ForVideoClassification.from_pretrained(
            tmp, output_loading_info=True, attn_implementation="sdpa"
        )
    if info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]:
        raise SystemExit(f"keys not loaded as written: {info}")
    model = model.double().eval()
    for k, v in model.state_dict().items():
        if not torch.equal(v, state[k].double()):
            raise SystemExit(f"{k}: not the value written")
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        logits = model(pixel_values_videos=x.permute(0, 2, 1, 3, 4)).logits
        tokens = model.vjepa2(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
    doc = {
        "reference": f"transformers {importlib.metadata.version('transformers')} "
        "VJEPA2ForVideoClassification.from_pretrained(<official-layout dir>), float64, attn_implementation='sdpa'",
        "checkpoint_format": "Hugging Face transformers directory: model.safetensors + config.json (field `config`)",
        "config": CONFIG,
        "state_dict": manifest,
        "input": {"shape": INPUT_SHAPE, "rule": "randn(shape, Generator().manual_seed(0), float64), as the fixtures"},
        "reference_input_note": "pixel_values_videos = x.permute(0, 2, 1, 3, 4), i.e. (B, T, C, H, W)",
        "output_float64": [[round(v, 10) for v in row] for row in logits.tolist()],
        "tokens_float64": [[round(v, 10) for v in row] for row in tokens[0].tolist()],
    }
    out.write_text(json.dumps(doc) + "\n")
    print(f"wrote logits {tuple(logits.shape)} and tokens {tuple(tokens[0].shape)} to {out}")


if __name__ == "__main__":
    main()
