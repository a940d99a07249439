"""TimeSformer: a ViT over per-frame 16x16 patches with divided space-time attention.

Every block attends first over time (each patch position across the frames), then over space
(the patches of one frame, with the class token), then applies the MLP:
- temporal: t = x + temporal_fc(temporal_attn(temporal_norm(x))) on the patch tokens;
- spatial: each frame's tokens with a copy of the class token go through attn(norm1(.)); the
  class token's update is the mean of its per-frame updates;
- x + mlp(norm2(x)).
Patch tokens are ordered position-major (token s*T + t is patch s of frame t). Learned spatial
(with the class token's) and temporal tables fix the clip size: `num_frames` x `crop_size`.
The classifier reads the final LayerNorm of the class token.

The published files (facebook/timesformer-*) are transformers directories: `config.json` with
`pytorch_model.bin`, keys `timesformer.encoder.layer.N.{attention,temporal_attention}.attention.qkv`
(one fused projection with bias), `temporal_dense`, `temporal_layernorm` and the 4.x ViT names.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import KINETICS_MEAN, KINETICS_STD, InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import Attention, DropPath, Mlp, PatchEmbed3d
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.models.transformers.hf_config import Field, check_hf_config, check_num_labels, rename_vit_layers
from videozoo.weights.errors import CheckpointError
from videozoo.weights.sources import WeightSource


class DividedBlock(nn.Module):
    """One TimeSformer block on (B, 1 + S*T, D) tokens, the class token first."""

    def __init__(
        self, dim: int, num_heads: int, mlp_hidden: int, *, act: str, norm_eps: float, drop_path: float
    ) -> None:
        super().__init__()
        self.temporal_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.temporal_attn = Attention(dim, num_heads, bias="qkv")
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, bias="qkv")
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, act=act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        b, n, d = x.shape
        s = (n - 1) // frames
        cls, patches = x[:, :1], x[:, 1:]  # (B, 1, D), (B, S*T, D)
        # Time: each patch position attends over its T frames.
        t = self.temporal_attn(self.temporal_norm(patches.reshape(b * s, frames, d)))  # (B*S, T, D)
        patches = patches + self.temporal_fc(self.drop_path(t).reshape(b, s * frames, d))
        # Space: each frame's S patches, with the class token, attend over one another.
        per_frame = patches.reshape(b, s, frames, d).transpose(1, 2).reshape(b * frames, s, d)
        per_frame = torch.cat([cls.repeat_interleave(frames, dim=0), per_frame], dim=1)  # (B*T, 1+S, D)
        upd = self.drop_path(self.attn(self.norm1(per_frame)))
        cls_upd = upd[:, 0].reshape(b, frames, d).mean(dim=1, keepdim=True)  # (B, 1, D)
        patch_upd = upd[:, 1:].reshape(b, frames, s, d).transpose(1, 2).reshape(b, s * frames, d)
        x = torch.cat([cls + cls_upd, patches + patch_upd], dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TimeSformer(VideoClassifier):
    classifier_name = "head"
    fixed_input_size = True

    def __init__(
        self,
        *,
        num_classes: int = 400,
        num_frames: int = 8,
        crop_size: int = 224,
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_hidden: int = 3072,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_frames, self.crop_size = num_frames, crop_size
        self.patch_embed = PatchEmbed3d(3, dim, (1, patch_size, patch_size))
        _, h, w = self.patch_embed.grid(num_frames, crop_size, crop_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + h * w, dim))  # the class token's, then each patch's
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        self.blocks = nn.ModuleList(
            DividedBlock(
                dim, num_heads, mlp_hidden, act=act, norm_eps=norm_eps, drop_path=drop_path * i / max(depth - 1, 1)
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(dim, num_classes)
        _init_vit(self, (self.cls_token, self.pos_embed, self.time_embed))

    def layer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward_positions(self, x: Tensor) -> Tensor:
        _check_size(self, x, "TimeSformer")
        b, frames = x.shape[0], self.num_frames
        tokens = self.patch_embed(x)  # (B, T*S, D), frame-major
        d = tokens.shape[-1]
        tokens = tokens.reshape(b, frames, -1, d) + self.pos_embed[:, None, 1:]  # (B, T, S, D)
        tokens = tokens + self.time_embed[:, :, None]  # one vector per frame
        tokens = tokens.transpose(1, 2).reshape(b, -1, d)  # (B, S*T, D), position-major
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x, frames)
        return self.norm(x[:, :1])  # (B, 1, D): the class token

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if any(k.startswith("timesformer.") for k in state):
            renamed = rename_vit_layers(state, "timesformer.encoder.layer.", "blocks.", suffixes=_TEMPORAL)
            out = {_TOP.get(k, k): v for k, v in renamed.items()}
            proj = out.get("patch_embed.proj.weight")
            if proj is not None and proj.ndim == 4:  # a per-frame Conv2d: (D, C, p, p) -> (D, C, 1, p, p)
                out["patch_embed.proj.weight"] = proj.unsqueeze(2)
            return out
        if fmt == "transformers":
            raise CheckpointError(f"{source}: a transformers directory without any timesformer.* weights")
        return super().convert_checkpoint(fmt, state, source=source)

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        check_hf_config(
            config,
            arch,
            source=source,
            model_type="timesformer",
            fields=_HF_FIELDS,
            training_only=frozenset({"attention_probs_dropout_prob", "hidden_dropout_prob", "drop_path_rate"}),
            # Only divided space-time attention was published for Kinetics; qkv_bias False is not supported.
            fixed={"num_channels": 3, "attention_type": "divided_space_time", "qkv_bias": True},
        )
        check_num_labels(config, arch["num_classes"], source=source)


def _check_size(model: Any, x: Tensor, family: str) -> None:
    expected = (model.num_frames, model.crop_size, model.crop_size)
    if x.ndim != 5 or tuple(x.shape[2:]) != expected:
        got = "x".join(map(str, x.shape[2:])) if x.ndim == 5 else f"a tensor of shape {tuple(x.shape)}"
        raise ValueError(
            f"{family} takes clips of exactly {'x'.join(map(str, expected))} (frames x height x width), "
            f"the size its position tables were learned for; got {got}"
        )


def _init_vit(model: nn.Module, tables: tuple[nn.Parameter, ...]) -> None:
    """The references' fresh initialisation: truncated normal (std 0.02) linears and tables."""
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for t in tables:
        nn.init.trunc_normal_(t, std=0.02)


_TEMPORAL = {
    "temporal_layernorm.weight": "temporal_norm.weight",
    "temporal_layernorm.bias": "temporal_norm.bias",
    "temporal_attention.attention.qkv.weight": "temporal_attn.qkv.weight",
    "temporal_attention.attention.qkv.bias": "temporal_attn.qkv.bias",
    "temporal_attention.output.dense.weight": "temporal_attn.proj.weight",
    "temporal_attention.output.dense.bias": "temporal_attn.proj.bias",
    "temporal_dense.weight": "temporal_fc.weight",
    "temporal_dense.bias": "temporal_fc.bias",
}
_TOP = {
    "timesformer.embeddings.cls_token": "cls_token",
    "timesformer.embeddings.position_embeddings": "pos_embed",
    "timesformer.embeddings.time_embeddings": "time_embed",
    "timesformer.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "timesformer.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "timesformer.layernorm.weight": "norm.weight",
    "timesformer.layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
_HF_FIELDS = {
    "hidden_size": Field("dim", 768),
    "num_hidden_layers": Field("depth", 12),
    "num_attention_heads": Field("num_heads", 12),
    "intermediate_size": Field("mlp_hidden", 3072),
    "hidden_act": Field("act", "gelu"),
    "image_size": Field("crop_size", 224),
    "patch_size": Field("patch_size", 16),
    "num_frames": Field("num_frames", 8),
    "layer_norm_eps": Field("norm_eps", 1e-6),
}


# The Kinetics-400 variants: ViT-B/16 with divided space-time attention at three clip sizes. The
# facebook/timesformer-*-finetuned-k400 preprocessors declare mean 0.45 and std 0.225 (not ImageNet's)
# and a short side equal to the crop; the reference's Kinetics configs (TimeSformer_divST_<frames>x
# <rate>_<crop>.yaml) take 1 clip x 3 crops at test time. Accuracy: the TimeSformer README's K400 table.
# (name, Hub repository, frames, sampling rate, crop, top-1, top-5, description)
_VARIANTS = (
    ("timesformer_b_k400", "timesformer-base-finetuned-k400", 8, 32, 224, 77.9, 93.2, "TimeSformer-B"),
    ("timesformer_hr_k400", "timesformer-hr-finetuned-k400", 16, 16, 448, 79.6, 94.0, "TimeSformer-HR"),
    ("timesformer_l_k400", "timesformer-large-finetuned-k400", 96, 4, 224, 80.6, 94.7, "TimeSformer-L"),
)

for _name, _repo, _frames, _rate, _crop, _top1, _top5, _what in _VARIANTS:
    register(
        ModelSpec(
            name=_name,
            family="timesformer",
            cls=TimeSformer,
            arch={"num_frames": _frames, "crop_size": _crop},
            input=InputConfig(
                num_frames=_frames,
                sampling_rate=_rate,
                fps=30,
                short_side=_crop,
                crop_size=_crop,
                train_crop_size=_crop,
                mean=KINETICS_MEAN,
                std=KINETICS_STD,
                test_clips=1,
                test_crops=3,
            ),
            weights={
                "kinetics400": WeightSource(
                    url=f"https://huggingface.co/facebook/{_repo}/resolve/main/pytorch_model.bin",
                    format="transformers",
                    license="CC-BY-NC-4.0",  # the model card's licence (the TimeSformer repository's too)
                    cache_name=f"{_repo}.bin",
                )
            },
            metrics=Metrics(
                top1=_top1,
                top5=_top5,
                gflops=None,
                params_m=None,
                views="1x3",
                source=f"facebookresearch/TimeSformer README (Kinetics-400, {_what} {_frames}x{_crop})",
            ),
            description=f"{_what} (ViT-B/16), {_frames} frames at {_crop}, divided space-time attention, Kinetics-400",
            paper="Bertasius et al., Is Space-Time Attention All You Need for Video Understanding?, ICML 2021 (arXiv:2102.05095)",
        )
    )
