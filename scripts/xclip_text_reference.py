"""Write tests/data/xclip_text_reference.json: transformers' X-CLIP text embeddings of the fixture prompts.

The X-CLIP fixture (../shared/fixtures/transformers/xclip_b32_8f.json) gives the model's video-side
outputs; this adds the text side alone, from the same deterministic weights: the text tensors of the
manifest are written as an official-layout directory (config.json + model.safetensors), loaded with
`XCLIPModel.from_pretrained`, and `get_text_features` is run in float64 on the fixture's input_ids and
attention_mask. Run with a Python that has transformers:

    python scripts/xclip_text_reference.py [OUT]
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

from fixtures_util import deterministic_tensor, load_fixture  # noqa: E402

OUT = ROOT / "tests" / "data" / "xclip_text_reference.json"


def main() -> None:
    from transformers import XCLIPModel

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    fx = load_fixture("transformers/xclip_b32_8f")
    text = {k: deterministic_tensor(k, s, kind) for k, s, kind in fx["state_dict"]}
    text = {k: v for k, v in text.items() if k.startswith("text_model.") or k == "text_projection.weight"}
    text["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(fx["config"]))
        save_file(text, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        model, info = XCLIPModel.from_pretrained(tmp, output_loading_info=True, attn_implementation="sdpa")
    text_side = ("text_model.", "text_projection.")
    missing_text = [k for k in info["missing_keys"] if k.startswith(text_side) and "position_ids" not in k]
    if missing_text or info["unexpected_keys"] or info["mismatched_keys"]:
        raise SystemExit(f"text keys not loaded as written: {info}")
    model = model.double().eval()
    ids = torch.tensor(fx["input_ids"])
    mask = torch.tensor(fx["attention_mask"])
    with torch.no_grad():
        feats = model.get_text_features(input_ids=ids, attention_mask=mask)
    if not isinstance(feats, torch.Tensor):
        feats = feats.pooler_output
    doc = {
        "reference": f"transformers {importlib.metadata.version('transformers')} "
        "XCLIPModel.from_pretrained(<text tensors of the fixture in the official layout>).get_text_features, "
        "float64, attn_implementation='sdpa'",
        "fixture": "transformers/xclip_b32_8f",
        "text_prompts": fx["text_prompts"],
        "text_embeds_float64": [[round(v, 10) for v in row] for row in feats.tolist()],
    }
    out.write_text(json.dumps(doc) + "\n")
    print(f"wrote {tuple(feats.shape)} text embeddings to {out}")


if __name__ == "__main__":
    main()
