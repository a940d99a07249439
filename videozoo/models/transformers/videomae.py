"""VideoMAE and VideoMAE V2: a plain ViT over space-time tubelets, classified from the mean token.

The clip is cut into 2x16x16 tubelets (a Conv3d whose kernel is its stride), a fixed sine-cosine
table is added (one position per tubelet, time-major), and a stack of pre-norm ViT blocks follows.
Attention has query and value biases but no key bias. The classifier reads the LayerNorm'd mean of
all tokens (`use_mean_pooling`; there is no class token). The table is built for one clip size,
so the model takes exactly `num_frames` x `crop_size` x `crop_size`.

Both versions are the same network; they differ in their published files and LayerNorm epsilons:
- VideoMAE (MCG-NJU) as a transformers directory: `config.json` decides the architecture (checked
  against the entry); keys `videomae.encoder.layer.N.attention.attention.{query,key,value}.weight`
  plus `q_bias`/`v_bias`, blocks' LayerNorm eps from the config (1e-12), `fc_norm` at
  PyTorch's default 1e-5.
- VideoMAE V2 (OpenGVLab) as a DeepSpeed `{'module': state_dict}` in float16, with this model's
  own key names (`blocks.N.attn.qkv.weight`, `q_bias`, `v_bias`, ...), every LayerNorm at 1e-6, and
  a Kinetics-710 head; the Kinetics-400 entries keep the head's rows of Kinetics-400's classes.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from torch import Tensor

from videozoo.data.classes import k400_rows_in_k710
from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import Block, PatchEmbed3d, sincos_table
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.models.transformers.hf_config import Field, check_hf_config, check_num_labels, rename_vit_layers
from videozoo.weights.errors import CheckpointError
from videozoo.weights.sources import WeightSource

# ImageNet's statistics (0-1 pixel scale): what VideoMAE's and VideoMAE V2's fine-tuning and test
# pipelines normalise with, and what the MCG-NJU preprocessor configs declare.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoMAE(VideoClassifier):
    classifier_name = "head"
    native_formats = frozenset({"videozoo", "safetensors", "deepspeed", "torchvision"})
    fixed_input_size = True

    def __init__(
        self,
        *,
        num_classes: int = 400,
        num_frames: int = 16,
        crop_size: int = 224,
        patch_size: int = 16,
        tubelet: int = 2,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_hidden: int = 3072,
        act: str = "gelu",
        attn_bias: str = "qv",
        norm_eps: float = 1e-6,
        fc_norm_eps: float = 1e-6,
        use_mean_pooling: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_frames, self.crop_size = num_frames, crop_size
        self.patch_embed = PatchEmbed3d(3, dim, (tubelet, patch_size, patch_size))
        grid = self.patch_embed.grid(num_frames, crop_size, crop_size)
        # Fixed, not learned: kept out of the state dict (no file stores it) and made on the CPU
        # even when the model is built on the meta device to be filled from a checkpoint.
        table = sincos_table(grid[0] * grid[1] * grid[2], dim, device="cpu")
        self.register_buffer("pos_embed", table.unsqueeze(0), persistent=False)  # (1, N, D)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                num_heads,
                mlp_hidden,
                attn_bias=attn_bias,
                act=act,
                norm_eps=norm_eps,
                drop_path=drop_path * i / max(depth - 1, 1),
            )
            for i in range(depth)
        )
        # Mean pooling reads a LayerNorm of the mean token; without it, the LayerNorm'd first token.
        self.fc_norm = nn.LayerNorm(dim, eps=fc_norm_eps) if use_mean_pooling else None
        self.norm = None if use_mean_pooling else nn.LayerNorm(dim, eps=norm_eps)
        self.head_dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def layer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward_positions(self, x: Tensor) -> Tensor:
        expected = (self.num_frames, self.crop_size, self.crop_size)
        if x.ndim != 5 or tuple(x.shape[2:]) != expected:
            got = "x".join(map(str, x.shape[2:])) if x.ndim == 5 else f"a tensor of shape {tuple(x.shape)}"
            raise ValueError(
                f"VideoMAE takes clips of exactly {'x'.join(map(str, expected))} (frames x height x width), "
                f"the size its position table was made for; got {got}"
            )
        x = self.patch_embed(x)  # (B, N, D)
        # (1, N, D); a real copy only where the clip is elsewhere than the table (shape passes on meta).
        x = x + self.pos_embed.to(device=x.device, dtype=x.dtype)
        for block in self.blocks:
            x = block(x)
        if self.fc_norm is not None:
            return self.fc_norm(x.mean(dim=1)).unsqueeze(1)  # (B, 1, D)
        assert self.norm is not None
        return self.norm(x[:, :1])  # (B, 1, D)

    # -- the published files ---------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        """MCG-NJU's transformers layout (a directory, or its weight file alone) to this model's keys;
        VideoMAE V2's files and videozoo's own already use them."""
        if any(k.startswith("videomae.") for k in state):
            return _from_transformers(state)
        if fmt == "transformers":
            raise CheckpointError(f"{source}: a transformers directory without any videomae.* weights")
        return super().convert_checkpoint(fmt, state, source=source)

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        check_hf_config(
            config,
            arch,
            source=source,
            model_type="videomae",
            fields=_HF_FIELDS,
            training_only=_HF_TRAINING_ONLY,
            fixed={"num_channels": 3},
        )
        if arch["fc_norm_eps"] != 1e-5:
            # transformers' VideoMAE normalises the mean token at PyTorch's default epsilon; an entry
            # whose fc_norm differs (VideoMAE V2's 1e-6) is not the network of a transformers file.
            raise CheckpointError(f"{source}: a transformers directory, but this entry's fc_norm eps is not 1e-5")
        check_num_labels(config, arch["num_classes"], source=source)


# config.json field -> family argument, with transformers' default where the field is absent.
_HF_FIELDS = {
    "hidden_size": Field("dim", 768),
    "num_hidden_layers": Field("depth", 12),
    "num_attention_heads": Field("num_heads", 12),
    "intermediate_size": Field("mlp_hidden", 3072),
    "hidden_act": Field("act", "gelu"),
    "image_size": Field("crop_size", 224),
    "patch_size": Field("patch_size", 16),
    "tubelet_size": Field("tubelet", 2),
    "num_frames": Field("num_frames", 16),
    "qkv_bias": Field("attn_bias", True, lambda v: "qv" if v else "none"),
    "layer_norm_eps": Field("norm_eps", 1e-12),
    "use_mean_pooling": Field("use_mean_pooling", True),
}
# Dropout rates (inactive in eval) and the pre-training decoder's settings (not in a classifier).
_HF_TRAINING_ONLY = frozenset(
    {
        "attention_probs_dropout_prob",
        "hidden_dropout_prob",
        "norm_pix_loss",
        "decoder_hidden_size",
        "decoder_intermediate_size",
        "decoder_num_attention_heads",
        "decoder_num_hidden_layers",
    }
)


def _from_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    renamed = rename_vit_layers(state, "videomae.encoder.layer.", "blocks.")
    top = {
        "videomae.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "videomae.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "videomae.layernorm.weight": "norm.weight",
        "videomae.layernorm.bias": "norm.bias",
        "fc_norm.weight": "fc_norm.weight",
        "fc_norm.bias": "fc_norm.bias",
        "classifier.weight": "head.weight",
        "classifier.bias": "head.bias",
    }
    # Keys of no known place keep their file names, so that loading lists them as unexpected.
    return {top.get(k, k): v for k, v in renamed.items()}


# -- the registry --------------------------------------------------------------------------------

_SIZES = {  # dim, depth, heads, MLP width
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
    "h": (1280, 32, 16, 5120),
}


def _arch(size: str, **extra: Any) -> dict[str, Any]:
    dim, depth, heads, hidden = _SIZES[size]
    return {"dim": dim, "depth": depth, "num_heads": heads, "mlp_hidden": hidden, **extra}


def _input(sampling_rate: int) -> InputConfig:
    # 16 frames 4 apart; the test views are 5 clips x 3 crops of 224 at a short side of 224.
    return InputConfig(
        num_frames=16,
        sampling_rate=sampling_rate,
        fps=30,
        short_side=224,
        crop_size=224,
        train_crop_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        test_clips=5,
        test_crops=3,
    )


_PAPER_V1 = "Tong et al., VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised Video Pre-Training, NeurIPS 2022 (arXiv:2203.12602)"
_PAPER_V2 = (
    "Wang et al., VideoMAE V2: Scaling Video Masked Autoencoders with Dual Masking, CVPR 2023 (arXiv:2303.16727)"
)
_V1_ZOO = "MCG-NJU/VideoMAE MODEL_ZOO.md (Kinetics-400, fine-tuned)"
_V2_ZOO = "OpenGVLab/VideoMAEv2 docs/MODEL_ZOO.md (Distillation)"

# (size, top-1, top-5, name of the transformers repository, weight file in it)
_V1 = (
    # The Hub's small model was converted with 16 heads (head width 24), as its config.json says;
    # the original ViT-S has 6. The published weights are computed with the config's 16.
    ("s", 79.0, 93.8, "videomae-small-finetuned-kinetics", "pytorch_model.bin", {"num_heads": 16}),
    ("b", 81.5, 95.1, "videomae-base-finetuned-kinetics", "model.safetensors", {}),
    ("l", 85.2, 96.8, "videomae-large-finetuned-kinetics", "pytorch_model.bin", {}),
    ("h", 86.6, 97.1, "videomae-huge-finetuned-kinetics", "pytorch_model.bin", {}),
)
_WIDTH_NAME = {"s": "ViT-S", "b": "ViT-B", "l": "ViT-L", "h": "ViT-H"}

for _size, _top1, _top5, _repo, _file, _extra in _V1:
    register(
        ModelSpec(
            name=f"videomae_{_size}_k400",
            family="videomae",
            cls=VideoMAE,
            arch=_arch(_size, norm_eps=1e-12, fc_norm_eps=1e-5, **_extra),
            input=_input(4),
            weights={
                "kinetics400": WeightSource(
                    url=f"https://huggingface.co/MCG-NJU/{_repo}/resolve/main/{_file}",
                    format="transformers",
                    license="CC-BY-NC-4.0",  # the MCG-NJU model cards' licence (the VideoMAE repository's too)
                    cache_name=f"{_repo}.{_file.rsplit('.', 1)[-1]}",
                )
            },
            metrics=Metrics(top1=_top1, top5=_top5, gflops=None, params_m=None, views="5x3", source=_V1_ZOO),
            description=f"VideoMAE {_WIDTH_NAME[_size]}/16, 16 frames at stride 4, pre-trained and fine-tuned on Kinetics-400",
            paper=_PAPER_V1,
        )
    )

# (size, Kinetics-400 top-1 of the Kinetics-710 head read at Kinetics-400's classes, file)
_V2 = (("s", 83.7, "vit_s_k710_dl_from_giant.pth"), ("b", 86.6, "vit_b_k710_dl_from_giant.pth"))
for _size, _top1_400, _file in _V2:
    _source = WeightSource(
        url=f"https://huggingface.co/OpenGVLab/VideoMAE2/resolve/main/distill/{_file}",
        format="deepspeed",
        # The licence the OpenGVLab/VideoMAE2 repository declares for its files (the same weights
        # re-published as OpenGVLab/VideoMAEv2-Base and others carry CC-BY-NC-4.0 there).
        license="Apache-2.0",
        num_classes=710,
        dataset="kinetics710",
    )
    _common: dict[str, Any] = {
        "family": "videomaev2",
        "cls": VideoMAE,
        "arch": _arch(_size, norm_eps=1e-6, fc_norm_eps=1e-6),
        "input": _input(4),
        "weights": {"kinetics710": _source},
        "paper": _PAPER_V2,
    }
    register(
        ModelSpec(
            name=f"videomaev2_{_size}_k400",
            **_common,
            default_weights="kinetics710",
            head_rows=k400_rows_in_k710(),
            metrics=Metrics(top1=_top1_400, top5=None, gflops=None, params_m=None, views="5x3", source=_V2_ZOO),
            description=f"VideoMAE V2 {_WIDTH_NAME[_size]}/16 distilled from ViT-g on Kinetics-710; "
            "Kinetics-400's classes read from the Kinetics-710 head",
        )
    )
    register(
        ModelSpec(
            name=f"videomaev2_{_size}_k710",
            **_common,
            num_classes=710,
            default_weights="kinetics710",
            # The published Kinetics-710 top-1 (ViT-S 77.6, ViT-B 81.5) is not a Kinetics-400 figure,
            # which is what the table's accuracy columns hold.
            metrics=Metrics(top1=None, top5=None, gflops=None, params_m=None, views="5x3", source=_V2_ZOO),
            description=f"VideoMAE V2 {_WIDTH_NAME[_size]}/16 distilled from ViT-g on Kinetics-710 (710 classes)",
        )
    )
