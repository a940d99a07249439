"""V-JEPA 2: a self-supervised ViT encoder with 3D rotary positions, read by an attentive probe.

The encoder cuts the clip into 2x16x16 tubelets (a Conv3d whose kernel is its stride, tokens
time-major) and runs pre-norm ViT blocks with biased query/key/value. There is no position table:
every block rotates its queries and keys by each token's frame, row and column (3D RoPE,
`videozoo.models.layers.rope`), so a clip of any number of frames (a multiple of the tubelet) at
the crop size runs. A final LayerNorm gives the encoder's tokens.

The classifiers are attentive probes trained on the frozen encoder: three pre-norm self-attention
blocks over the tokens (separate q/k/v/out projections, MLP at 4x width whatever the encoder's
ratio), then one learned query token cross-attends to the LayerNorm'd tokens (query and key/value
projections, no output projection; the residual is the query token), an MLP block follows, and a
linear layer reads the pooled vector. Those pooled vectors are the model's features; the encoder's
tokens are `forward_tokens`. The encoder alone (`VJEPA2Encoder`, the pre-trained files without a
probe) is a feature extractor: its features are the mean of its tokens.

The published files (facebook/vjepa2-*) are transformers directories (transformers 4.53):
`config.json` with `model.safetensors`, keys `vjepa2.encoder.layer.N.attention.{query,key,value,
proj}`, `...norm1/norm2`, `...mlp.fc1/fc2`, `pooler.*` and `classifier.*`. They also hold the
self-supervised predictor (`vjepa2.predictor.*`), which classification never runs: it is set
aside by name, and every other key must find its place.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import Block, CrossAttention, Mlp, PatchEmbed3d, rope_tables
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.models.transformers.hf_config import Field, check_hf_config, check_num_labels, rename_clip_layers
from videozoo.weights.errors import CheckpointError
from videozoo.weights.sources import WeightSource

# ImageNet's statistics (0-1 pixel scale): what the V-JEPA 2 evaluations normalise with and what
# the facebook/vjepa2 video-processor configs declare.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PoolerCrossBlock(nn.Module):
    """query + attn(query, norm1(tokens)), then x + mlp(norm2(x)): (B, Q, D) x (B, N, D) -> (B, Q, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, *, act: str, norm_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = CrossAttention(dim, num_heads, out_proj=False)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, act=act)

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        # Only the tokens are normalised: the query tokens enter the attention as they are.
        x = queries + self.attn(queries, self.norm1(tokens))
        return x + self.mlp(self.norm2(x))


class AttentivePooler(nn.Module):
    """Self-attention blocks over the tokens, then learned queries cross-attend: (B, N, D) -> (B, Q, D)."""

    def __init__(
        self, dim: int, num_heads: int, *, depth: int, num_queries: int = 1, act: str, norm_eps: float
    ) -> None:
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, dim))
        # The probe's MLPs are 4x wide in every published model (transformers builds them with its
        # default ratio, not the encoder's `mlp_ratio`).
        self.blocks = nn.ModuleList(Block(dim, num_heads, 4 * dim, act=act, norm_eps=norm_eps) for _ in range(depth))
        self.cross = PoolerCrossBlock(dim, num_heads, 4 * dim, act=act, norm_eps=norm_eps)

    def forward(self, tokens: Tensor) -> Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        # A copy per clip, not an expanded view: FLOP counting's module hooks need a tensor with a
        # history or none, and a no-grad view of a parameter has neither.
        return self.cross(self.query_tokens.repeat(tokens.shape[0], 1, 1), tokens)


class VJEPA2Encoder(VideoClassifier):
    """The encoder alone, as the pre-trained files hold it (facebook/vjepa2-vit*-fpc64-*): a feature
    extractor with no classes. Its features are the mean of its tokens; `forward_tokens` gives them
    all. The classifier (`VJEPA2`) is this encoder with the attentive probe on top."""

    has_classifier = False
    # Any number of frames runs (rotary positions), but only the crop size the positions index.
    fixed_input_size = True

    def __init__(
        self,
        *,
        num_classes: int = 0,
        num_frames: int = 16,
        crop_size: int = 256,
        patch_size: int = 16,
        tubelet: int = 2,
        dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes and type(self) is VJEPA2Encoder:
            raise ValueError(
                f"the V-JEPA 2 encoder has no classifier for {num_classes} classes: "
                "fine-tune one of the vjepa2_*_ssv2 / vjepa2_*_diving48 entries (encoder and attentive probe)"
            )
        self.num_frames, self.crop_size, self.num_heads = num_frames, crop_size, num_heads
        self.patch_embed = PatchEmbed3d(3, dim, (tubelet, patch_size, patch_size))
        self.blocks = nn.ModuleList(
            Block(
                dim,
                num_heads,
                int(dim * mlp_ratio),  # transformers' int(): ViT-g's 48/11 ratio gives 6144 at 1408
                attn_bias="qkv",
                act=act,
                norm_eps=norm_eps,
                drop_path=drop_path * i / max(depth - 1, 1),
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        if type(self) is VJEPA2Encoder:  # the classifier initialises once its probe is built
            self._init_weights()

    def _init_weights(self) -> None:
        """The references' fresh initialisation: truncated normal (std 0.02) linears and convolution,
        zero biases, LayerNorms at identity."""
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_clip(self, x: Tensor) -> None:
        tubelet = self.patch_embed.tubelet[0]
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"V-JEPA 2 takes (B, 3, T, H, W) clips; got a tensor of shape {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if (h, w) != (self.crop_size, self.crop_size) or t < tubelet or t % tubelet:
            raise ValueError(
                f"V-JEPA 2 takes clips of {self.crop_size}x{self.crop_size} (its rotary positions index that "
                f"grid) and a number of frames that is a multiple of {tubelet}; got {t}x{h}x{w} "
                "(frames x height x width)"
            )

    def forward_tokens(self, x: Tensor) -> Tensor:
        """The encoder's tokens: (B, 3, T, H, W) -> (B, T/2 * H/16 * W/16, D), time-major, after the
        final LayerNorm (transformers' `last_hidden_state`)."""
        self._check_clip(x)
        grid = self.patch_embed.grid(*x.shape[2:])
        tokens = self.patch_embed(x)  # (B, N, D)
        rope = rope_tables(grid, tokens.shape[-1] // self.num_heads, device=tokens.device)  # (2, N, head_dim)
        for block in self.blocks:
            tokens = block(tokens, rope=rope)
        return self.norm(tokens)

    # -- the encoder as a feature extractor: no classes --------------------------------------------
    def layer_blocks(self) -> list[nn.Module]:
        # The encoder's blocks; the attentive probe above them is the top layer.
        return list(self.blocks)

    def forward_positions(self, x: Tensor) -> Tensor:
        return self.forward_tokens(x).mean(dim=1, keepdim=True)  # (B, 1, D): the mean token

    def forward(self, x: Tensor) -> Tensor:
        """The features (B, D): an encoder has no logits."""
        return self.forward_features(x)

    def get_classifier(self) -> nn.Linear:
        raise ValueError(
            f"{self.model_name or 'the V-JEPA 2 encoder'} has no classifier: it gives features "
            "(videozoo features, with --tokens for every token); the vjepa2_*_ssv2 / *_diving48 entries classify"
        )

    @property
    def num_classes(self) -> int:
        return 0

    @property
    def num_features(self) -> int:
        return self.norm.normalized_shape[0]

    def reset_classifier(self, num_classes: int) -> None:
        self.get_classifier()

    # -- the published files ---------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        # A VJEPA2Model file names its parts `encoder.*` and `predictor.*`; the classifier's file
        # holds the same under `vjepa2.`.
        if any(k.startswith(_ENCODER_ONLY) for k in state):
            state = {f"vjepa2.{k}" if k.startswith(_ENCODER_ONLY) else k: v for k, v in state.items()}
        if any(k.startswith("vjepa2.") for k in state):
            return _from_transformers(state)
        if fmt == "transformers":
            raise CheckpointError(f"{source}: a transformers directory without any V-JEPA 2 encoder weights")
        return super().convert_checkpoint(fmt, state, source=source)

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        # An encoder has no probe: the probe's depth (every VJEPA2Config carries one) is not its own.
        fields = {k: f for k, f in _HF_FIELDS.items() if k != "num_pooler_layers"}
        check_hf_config(
            config,
            arch,
            source=source,
            model_type="vjepa2",
            fields=fields,
            training_only=_HF_TRAINING_ONLY | {"num_pooler_layers"},
            fixed={"in_chans": 3, "qkv_bias": True},
        )


class VJEPA2(VJEPA2Encoder):
    """The encoder with an attentive probe and a linear classifier (the published SSv2 and
    Diving48 classifiers); its features are the probe's pooled vector."""

    has_classifier = True
    classifier_name = "head"

    def __init__(
        self,
        *,
        num_classes: int = 174,
        num_frames: int = 16,
        crop_size: int = 256,
        patch_size: int = 16,
        tubelet: int = 2,
        dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        pooler_depth: int = 3,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(
            num_frames=num_frames,
            crop_size=crop_size,
            patch_size=patch_size,
            tubelet=tubelet,
            dim=dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            act=act,
            norm_eps=norm_eps,
            drop_path=drop_path,
        )
        self.pooler = AttentivePooler(dim, num_heads, depth=pooler_depth, act=act, norm_eps=norm_eps)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        super()._init_weights()
        if not self.pooler.query_tokens.is_meta:
            nn.init.trunc_normal_(self.pooler.query_tokens, std=0.02)

    def forward_positions(self, x: Tensor) -> Tensor:
        return self.pooler(self.forward_tokens(x))  # (B, 1, D): the query token after the probe

    # The classifier's own: what VideoClassifier defines, not the encoder's feature-only answers.
    forward = VideoClassifier.forward
    get_classifier = VideoClassifier.get_classifier
    num_classes = VideoClassifier.num_classes
    num_features = VideoClassifier.num_features
    reset_classifier = VideoClassifier.reset_classifier

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        check_hf_config(
            config,
            arch,
            source=source,
            model_type="vjepa2",
            fields=_HF_FIELDS,
            training_only=_HF_TRAINING_ONLY,
            fixed={"in_chans": 3, "qkv_bias": True},
        )
        check_num_labels(config, arch["num_classes"], source=source)


# config.json field -> family argument, with transformers' default where the field is absent.
_HF_FIELDS = {
    "hidden_size": Field("dim", 1024),
    "num_hidden_layers": Field("depth", 24),
    "num_attention_heads": Field("num_heads", 16),
    "mlp_ratio": Field("mlp_ratio", 4.0),
    "hidden_act": Field("act", "gelu"),
    "crop_size": Field("crop_size", 256),
    "image_size": Field("crop_size", 256),  # transformers writes crop_size under both names
    "patch_size": Field("patch_size", 16),
    "tubelet_size": Field("tubelet", 2),
    "layer_norm_eps": Field("norm_eps", 1e-6),
    "num_pooler_layers": Field("pooler_depth", 3),
}
# Dropout and stochastic depth (inactive in eval), the pre-training clip length (the rotary
# positions take any number of frames: it does not change the computation), and the
# self-supervised predictor, which classification does not run.
_HF_TRAINING_ONLY = frozenset(
    {
        "attention_probs_dropout_prob",
        "attention_dropout",
        "drop_path_rate",
        "frames_per_clip",
        "pred_hidden_size",
        "pred_mlp_ratio",
        "pred_num_attention_heads",
        "pred_num_hidden_layers",
        "pred_num_mask_tokens",
        "pred_zero_init_mask_tokens",
    }
)

_PREDICTOR = "vjepa2.predictor."
_ENCODER_ONLY = ("encoder.", "predictor.")  # VJEPA2Model's own file: no `vjepa2.` prefix
_ENCODER_LAYER = "vjepa2.encoder.layer."
_LAYER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TOP = {
    "vjepa2.encoder.embeddings.patch_embeddings.proj.weight": "patch_embed.proj.weight",
    "vjepa2.encoder.embeddings.patch_embeddings.proj.bias": "patch_embed.proj.bias",
    "vjepa2.encoder.layernorm.weight": "norm.weight",
    "vjepa2.encoder.layernorm.bias": "norm.bias",
    "pooler.query_tokens": "pooler.query_tokens",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
_CROSS = "pooler.cross_attention_layer."
_CROSS_PARTS = {
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "cross_attn.q_proj": "attn.q",
}


def _stack(out: dict[str, Tensor], found: dict[str, tuple[str, Tensor]], names: tuple[str, ...], target: str) -> None:
    """`out[target]` = the tensors of `names` stacked row-wise, where all are present with one
    width; otherwise they keep their file names, for loading to list."""
    if set(found) == set(names) and len({tuple(found[n][1].shape[1:]) for n in names}) == 1:
        out[target] = torch.cat([found[n][1] for n in names], dim=0)
    else:
        out.update(dict(found.values()))


def _from_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The transformers layout to this model's keys. The predictor is set aside; any other key of
    no known place keeps its file name, so that loading lists it as unexpected."""
    state = {k: v for k, v in state.items() if not k.startswith(_PREDICTOR)}
    state = rename_clip_layers(state, "pooler.self_attention_layers.", "pooler.blocks.")
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, tuple[str, Tensor]]] = {}
    kv: dict[str, dict[str, tuple[str, Tensor]]] = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        if key in _TOP:
            out[_TOP[key]] = value
        elif key.startswith(_ENCODER_LAYER):
            index, _, part = module[len(_ENCODER_LAYER) :].partition(".")
            if index.isdigit() and part in ("attention.query", "attention.key", "attention.value"):
                qkv.setdefault((index, kind), {})[part.removeprefix("attention.")] = (key, value)
            elif index.isdigit() and part in _LAYER:
                out[f"blocks.{index}.{_LAYER[part]}.{kind}"] = value
            else:
                out[key] = value
        elif module.startswith(_CROSS):
            part = module[len(_CROSS) :]
            if part in ("cross_attn.k_proj", "cross_attn.v_proj"):
                kv.setdefault(kind, {})[part] = (key, value)
            elif part in _CROSS_PARTS:
                out[f"pooler.cross.{_CROSS_PARTS[part]}.{kind}"] = value
            else:
                out[key] = value
        else:
            out[key] = value
    for (index, kind), found in qkv.items():
        _stack(out, found, ("query", "key", "value"), f"blocks.{index}.attn.qkv.{kind}")
    for kind, found in kv.items():
        _stack(out, found, ("cross_attn.k_proj", "cross_attn.v_proj"), f"pooler.cross.attn.kv.{kind}")
    return out


# -- the registry --------------------------------------------------------------------------------

_SIZES: dict[str, dict[str, Any]] = {
    "l": {"dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0},
    # ViT-g/16 ("vit_giant_xformers"): width 1408, 40 blocks of 22 heads, MLP 6144 = 1408 * 48/11.
    "g": {"dim": 1408, "depth": 40, "num_heads": 22, "mlp_ratio": 48 / 11},
}
_WIDTH_NAME = {"l": "ViT-L/16", "g": "ViT-g/16"}
_PAPER = (
    "Assran et al., V-JEPA 2: Self-Supervised Video Models Enable Understanding, Prediction and Planning, "
    "2025 (arXiv:2506.09985)"
)
_SOURCE = "facebookresearch/vjepa2 README (Evaluation Attentive Probes; attentive probe on the frozen encoder)"
_DATASET_NAME = {"ssv2": "Something-Something V2 (174 classes)", "diving48": "Diving48 (48 classes)"}
_CLASSES = {"ssv2": 174, "diving48": 48}

# (size, dataset, Hub repository, crop, frames, frame step, clips, top-1) as the inference
# configs of facebookresearch/vjepa2 (configs/inference/<size>/<dataset>.yaml) evaluate them:
# `frames_per_clip` frames `frame_step` apart, `num_segments` clips spread over the video, each
# resized to a short side of `resolution` and cut into 3 crops of `resolution` along the long side.


def _input(crop: int, frames: int, step: int, clips: int, crops: int) -> InputConfig:
    """The inference configs' clip: the short side resized to the crop, ImageNet's mean and std."""
    return InputConfig(
        num_frames=frames,
        sampling_rate=step,
        fps=30,
        short_side=crop,
        crop_size=crop,
        train_crop_size=crop,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        test_clips=clips,
        test_crops=crops,
    )


def _source(repo: str, num_classes: int, dataset: str) -> WeightSource:
    """The `model.safetensors` of a facebook/vjepa2-* Hub repository."""
    return WeightSource(
        url=f"https://huggingface.co/facebook/{repo}/resolve/main/model.safetensors",
        format="transformers",
        num_classes=num_classes,
        dataset=dataset,
        cache_name=f"{repo}.safetensors",
        license="MIT",  # the facebook/vjepa2-* model cards and facebookresearch/vjepa2's LICENSE
    )


_PROBES = (
    ("l", "ssv2", "vjepa2-vitl-fpc16-256-ssv2", 256, 16, 4, 2, 73.7),
    ("l", "diving48", "vjepa2-vitl-fpc32-256-diving48", 256, 32, 2, 4, 89.0),
    ("g", "ssv2", "vjepa2-vitg-fpc64-384-ssv2", 384, 64, 2, 2, 77.3),
    ("g", "diving48", "vjepa2-vitg-fpc32-384-diving48", 384, 32, 2, 4, 90.2),
)

for _size, _data, _repo, _crop, _frames, _step, _clips, _top1 in _PROBES:
    register(
        ModelSpec(
            name=f"vjepa2_{_size}_{_data}",
            family="vjepa2",
            cls=VJEPA2,
            arch={**_SIZES[_size], "crop_size": _crop, "num_frames": _frames},
            input=_input(_crop, _frames, _step, _clips, 3),
            weights={_data: _source(_repo, _CLASSES[_data], _data)},
            default_weights=_data,
            num_classes=_CLASSES[_data],
            metrics=Metrics(
                top1=_top1, top5=None, gflops=None, params_m=None, views=f"{_clips}x3", source=_SOURCE, dataset=_data
            ),
            description=f"V-JEPA 2 {_WIDTH_NAME[_size]} at {_crop} with its attentive probe, "
            f"{_frames} frames at stride {_step}, {_DATASET_NAME[_data]}",
            paper=_PAPER,
        )
    )

# The pre-trained encoders alone (no probe, no classes): feature extractors. Their clip is the one
# the same encoder's SSv2 probe is evaluated with; any number of frames (a multiple of 2) runs.
_ENCODERS = (("l", "vjepa2-vitl-fpc64-256", 256, 16, 4), ("g", "vjepa2-vitg-fpc64-384", 384, 64, 2))
for _size, _repo, _crop, _frames, _step in _ENCODERS:
    register(
        ModelSpec(
            name=f"vjepa2_{_size}_encoder",
            family="vjepa2",
            cls=VJEPA2Encoder,
            arch={**_SIZES[_size], "crop_size": _crop, "num_frames": _frames},
            input=_input(_crop, _frames, _step, 1, 1),
            weights={"videomix22m": _source(_repo, 0, "videomix22m")},
            default_weights="videomix22m",
            num_classes=0,
            metrics=Metrics(
                top1=None,
                top5=None,
                gflops=None,
                params_m=None,
                views="1x1",
                source="facebookresearch/vjepa2 README (V-JEPA 2 pretrained checkpoints)",
            ),
            description=f"V-JEPA 2 {_WIDTH_NAME[_size]} encoder at {_crop}, self-supervised on VideoMix22M: "
            "features (mean token, or every token), no classes",
            paper=_PAPER,
        )
    )
