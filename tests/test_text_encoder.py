"""X-CLIP's text encoder: key placement from the official layout, strict loading, transformers' outputs.

tests/data/xclip_text_reference.json holds transformers' `get_text_features` for the X-CLIP fixture's
prompts with the fixture's deterministic weights (scripts/xclip_text_reference.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fixtures_util import FIXTURES, deterministic_tensor, load_fixture
from videozoo.models.video_text.text_encoder import (
    ClipTextEncoder,
    TextConfig,
    load_text_encoder,
    text_state_from_official,
)
from videozoo.weights.errors import CheckpointError

FIXTURE = "transformers/xclip_b32_8f"
REFERENCE = json.loads((Path(__file__).parent / "data" / "xclip_text_reference.json").read_text())
TINY = {
    "projection_dim": 24,
    "text_config": {
        "vocab_size": 50,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 12,
    },
    "vision_config": {"hidden_size": 8},
}


def _fixture() -> dict:
    if not (FIXTURES / f"{FIXTURE}.json").is_file():
        pytest.skip(f"X-CLIP fixture not found under {FIXTURES}")
    return load_fixture(FIXTURE)


def _text_manifest(fx: dict) -> list[tuple[str, list[int], str]]:
    return [
        (k, s, kind) for k, s, kind in fx["state_dict"] if k.startswith("text_model.") or k == "text_projection.weight"
    ]


_LAYER_PARTS = {  # official layer part -> (rows, columns) in units of (hidden, intermediate)
    "self_attn.q_proj": "dd",
    "self_attn.k_proj": "dd",
    "self_attn.v_proj": "dd",
    "self_attn.out_proj": "dd",
    "layer_norm1": "d",
    "layer_norm2": "d",
    "mlp.fc1": "id",
    "mlp.fc2": "di",
}


def _official_text_state(config: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors under the official names for a text config (what the manifest lists for B/32)."""
    t = config["text_config"]
    size = {"d": t["hidden_size"], "i": t["intermediate_size"]}
    out = {
        "text_model.embeddings.token_embedding.weight": torch.randn(t["vocab_size"], size["d"], generator=gen),
        "text_model.embeddings.position_embedding.weight": torch.randn(
            t["max_position_embeddings"], size["d"], generator=gen
        ),
        "text_model.final_layer_norm.weight": torch.randn(size["d"], generator=gen),
        "text_model.final_layer_norm.bias": torch.randn(size["d"], generator=gen),
        "text_projection.weight": torch.randn(config["projection_dim"], size["d"], generator=gen),
    }
    for i in range(t["num_hidden_layers"]):
        for part, dims in _LAYER_PARTS.items():
            key = f"text_model.encoder.layers.{i}.{part}"
            out[f"{key}.weight"] = torch.randn(*(size[d] for d in dims), generator=gen)
            out[f"{key}.bias"] = torch.randn(size[dims[0]], generator=gen)
    return out


def _write_dir(path: Path, config: dict, state: dict[str, torch.Tensor], fmt: str = "safetensors") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if fmt == "safetensors":
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path


def test_every_text_key_of_the_manifest_has_its_place():
    fx = _fixture()
    model = ClipTextEncoder(TextConfig.from_xclip_config(fx["config"]))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    manifest = _text_manifest(fx)
    assert len(manifest) == 197
    placed = text_state_from_official({k: torch.empty(s) for k, s, _ in manifest})
    # Each layer's q, k and v projections become one fused qkv: 3 x 2 tensors into 2, 12 layers.
    assert len(placed) == 197 - 12 * 4
    assert {k: tuple(v.shape) for k, v in placed.items()} == own
    # Keys of the other parts (video side, prompt generator, logit scale) are not the text encoder's.
    text_keys = {k for k, _, _ in manifest}
    others = {k: torch.empty(s) for k, s, _ in fx["state_dict"] if k not in text_keys}
    assert len(others) == 591 - 197 and text_state_from_official(others) == {}


def test_fixture_weights_give_transformers_text_embeddings(tmp_path):
    fx = _fixture()
    state = {k: deterministic_tensor(k, s, kind) for k, s, kind in _text_manifest(fx)}
    # What the official file holds besides the text weights: the int64 positions and other parts.
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    state["logit_scale"] = torch.tensor(2.6592)
    state["visual_projection.weight"] = torch.zeros(512, 768)
    model = load_text_encoder(_write_dir(tmp_path / "xclip", fx["config"], state))
    assert not model.training
    for key, tensor in text_state_from_official(state).items():
        assert torch.equal(model.state_dict()[key], tensor), key
    ids, mask = torch.tensor(fx["input_ids"]), torch.tensor(fx["attention_mask"])
    with torch.no_grad():
        out = model(ids, mask)
    ref = torch.tensor(REFERENCE["text_embeds_float64"], dtype=torch.float64)
    assert out.shape == ref.shape == (3, 512)
    assert REFERENCE["text_prompts"] == fx["text_prompts"]
    err = (out.double() - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), err


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_both_official_file_formats_load(tmp_path, fmt):
    state = _official_text_state(TINY, torch.Generator().manual_seed(0))
    state["text_model.embeddings.position_ids"] = torch.arange(12)[None]
    loaded = load_text_encoder(_write_dir(tmp_path, TINY, state, fmt))
    assert loaded.cfg == TextConfig(50, 16, 32, 2, 4, 12, projection_dim=24)
    assert torch.equal(loaded.layers[1].mlp.fc2.bias, state["text_model.encoder.layers.1.mlp.fc2.bias"])
    assert torch.equal(loaded.text_projection.weight, state["text_projection.weight"])
    assert loaded(torch.tensor([[48, 5, 49, 0]]), torch.tensor([[1, 1, 1, 0]])).shape == (1, 24)


def test_missing_unplaced_and_misshapen_keys_are_errors_naming_them(tmp_path):
    state = _official_text_state(TINY, torch.Generator().manual_seed(0))
    del state["text_model.encoder.layers.1.self_attn.k_proj.bias"]
    del state["text_model.final_layer_norm.weight"]
    with pytest.raises(CheckpointError) as e:
        load_text_encoder(_write_dir(tmp_path / "missing", TINY, state))
    # The fused qkv bias of layer 1 lacks its key part: reported missing, the other two unplaced.
    assert "missing 2 text weight(s): layers.1.attn.qkv.bias, final_layer_norm.weight" in str(e.value), e.value
    assert "text_model.encoder.layers.1.self_attn.q_proj.bias" in str(e.value)

    state = _official_text_state(TINY, torch.Generator().manual_seed(0))
    state["text_model.encoder.layers.2.mlp.fc1.weight"] = torch.zeros(32, 16)
    state["text_model.encoder.layers.0.self_attn.out_proj.weight"] = torch.zeros(16, 8)
    state["text_model.encoder.layers.1.self_attn.q_proj.weight"] = torch.zeros(16, 8)
    with pytest.raises(CheckpointError) as e:
        load_text_encoder(_write_dir(tmp_path / "extra", TINY, state))
    # A layer the config does not have (its name after renaming).
    assert "no place in the model: layers.2.mlp.fc1.weight" in str(e.value)
    assert "layers.0.attn.proj.weight (16, 8) (expected (16, 16))" in str(e.value)
    # Projections of different widths are never stacked: each is named.
    assert "text_model.encoder.layers.1.self_attn.q_proj.weight" in str(e.value)
    assert "missing 1 text weight(s): layers.1.attn.qkv.weight" in str(e.value)

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        load_text_encoder(tmp_path / "empty")


def test_pooling_reads_the_end_token_and_ignores_what_follows():
    torch.manual_seed(0)
    model = ClipTextEncoder(TextConfig.from_xclip_config(TINY)).eval()
    ids = torch.tensor([[48, 5, 6, 49, 0, 0], [48, 5, 6, 49, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        hidden, pooled = model.encode(ids, mask)
        out = model(ids, mask)
    assert hidden.shape == (2, 6, 16) and pooled.shape == (2, 16) and out.shape == (2, 24)
    # Causal attention: what comes after the end token cannot reach it.
    torch.testing.assert_close(pooled[0], pooled[1])
    torch.testing.assert_close(pooled[0], hidden[0, 3])
    # ...while an earlier token does.
    with torch.no_grad():
        changed = model.encode(torch.tensor([[48, 9, 6, 49, 0, 0]]), mask[:1])[1]
    assert not torch.allclose(changed[0], pooled[0])
    with pytest.raises(ValueError, match="positions"):
        model(torch.zeros(1, 13, dtype=torch.int64))
