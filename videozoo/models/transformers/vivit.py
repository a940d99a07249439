"""ViViT (spatio-temporal attention, "model 1"): a plain ViT over 2x16x16 tubelets with a class token.

The clip's tubelets (a Conv3d whose kernel is its stride, tokens time-major) follow a learned
class token; a learned table of 1 + T'*H'*W' positions is added (so the clip size is fixed:
`num_frames` x `crop_size`), then pre-norm ViT blocks with biased query/key/value and the
`gelu_fast` (tanh) activation the published config names. The classifier reads the final
LayerNorm of the class token.

The published file (google/vivit-b-16x2-kinetics400) is a transformers directory written by
transformers 4.x: `config.json` with `pytorch_model.bin`, keys
`vivit.encoder.layer.N.attention.attention.{query,key,value}`, `...attention.output.dense`,
`...intermediate.dense`, `...output.dense`, `layernorm_before/after`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import Block, PatchEmbed3d
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.models.transformers.hf_config import Field, check_hf_config, check_num_labels, rename_vit_layers
from videozoo.models.transformers.timesformer import _check_size, _init_vit
from videozoo.weights.errors import CheckpointError
from videozoo.weights.sources import WeightSource


class ViViT(VideoClassifier):
    classifier_name = "head"
    fixed_input_size = True

    def __init__(
        self,
        *,
        num_classes: int = 400,
        num_frames: int = 32,
        crop_size: int = 224,
        patch_size: int = 16,
        tubelet: int = 2,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_hidden: int = 3072,
        act: str = "gelu_fast",
        norm_eps: float = 1e-6,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_frames, self.crop_size = num_frames, crop_size
        self.patch_embed = PatchEmbed3d(3, dim, (tubelet, patch_size, patch_size))
        t, h, w = self.patch_embed.grid(num_frames, crop_size, crop_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + t * h * w, dim))  # the class token's first
        self.blocks = nn.ModuleList(
            Block(
                dim,
                num_heads,
                mlp_hidden,
                attn_bias="qkv",
                act=act,
                norm_eps=norm_eps,
                drop_path=drop_path * i / max(depth - 1, 1),
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(dim, num_classes)
        _init_vit(self, (self.cls_token, self.pos_embed))

    def layer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward_positions(self, x: Tensor) -> Tensor:
        _check_size(self, x, "ViViT")
        tokens = self.patch_embed(x)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, :1])  # (B, 1, D): the class token

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        if any(k.startswith("vivit.") for k in state):
            renamed = rename_vit_layers(state, "vivit.encoder.layer.", "blocks.")
            return {_TOP.get(k, k): v for k, v in renamed.items()}
        if fmt == "transformers":
            raise CheckpointError(f"{source}: a transformers directory without any vivit.* weights")
        return super().convert_checkpoint(fmt, state, source=source)

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        check_hf_config(
            config,
            arch,
            source=source,
            model_type="vivit",
            fields=_HF_FIELDS,
            training_only=frozenset({"attention_probs_dropout_prob", "hidden_dropout_prob"}),
            fixed={"num_channels": 3, "qkv_bias": True},
        )
        check_num_labels(config, arch["num_classes"], source=source)


def _tubelet(value: Any) -> tuple[int, int]:
    """config tubelet_size [t, h, w] -> (tubelet, patch_size); only square patches exist."""
    t, h, w = value
    if h != w:
        raise ValueError("non-square patches are not supported")
    return int(t), int(h)


_TOP = {
    "vivit.embeddings.cls_token": "cls_token",
    "vivit.embeddings.position_embeddings": "pos_embed",
    "vivit.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "vivit.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "vivit.layernorm.weight": "norm.weight",
    "vivit.layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
_HF_FIELDS = {
    "hidden_size": Field("dim", 768),
    "num_hidden_layers": Field("depth", 12),
    "num_attention_heads": Field("num_heads", 12),
    "intermediate_size": Field("mlp_hidden", 3072),
    "hidden_act": Field("act", "gelu_fast"),
    "image_size": Field("crop_size", 224),
    "num_frames": Field("num_frames", 32),
    "tubelet_size": Field(("tubelet", "patch_size"), [2, 16, 16], _tubelet),
    "layer_norm_eps": Field("norm_eps", 1e-6),
}


register(
    ModelSpec(
        name="vivit_b_k400",
        family="vivit",
        cls=ViViT,
        arch={"num_frames": 32, "crop_size": 224},
        # As scenic's vivit_base_k400 config evaluates the published model: 32 frames 2 apart, short
        # side 256 (its min_resize; the Hub preprocessor says 224), a 224 crop, pixels to [-1, 1]
        # (zero_centering: mean 0.5 and std 0.5 on the 0-1 scale, as the Hub preprocessor also
        # declares), 4 clips x 3 crops.
        input=InputConfig(
            num_frames=32,
            sampling_rate=2,
            fps=30,
            short_side=256,
            crop_size=224,
            train_crop_size=224,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            test_clips=4,
            test_crops=3,
        ),
        weights={
            "kinetics400": WeightSource(
                url="https://huggingface.co/google/vivit-b-16x2-kinetics400/resolve/main/pytorch_model.bin",
                format="transformers",
                license="MIT",  # the licence of the google/vivit-b-16x2-kinetics400 model card
                cache_name="vivit-b-16x2-kinetics400.bin",
            )
        },
        metrics=Metrics(
            top1=79.9, top5=None, gflops=None, params_m=None, views="4x3", source="google-research/scenic ViViT README"
        ),
        description="ViViT-B/16x2 (spatio-temporal attention), 32 frames at 224, Kinetics-400",
        paper="Arnab et al., ViViT: A Video Vision Transformer, ICCV 2021 (arXiv:2103.15691)",
    )
)
