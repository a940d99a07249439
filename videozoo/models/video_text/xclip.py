"""X-CLIP (Ni et al., ECCV 2022): CLIP extended to video, scoring a clip against labels written at run time.

The video side runs CLIP's ViT on every frame, with one cross-frame "message" token per frame and
layer: each layer projects every frame's class token, lets the T message tokens of a clip attend to
each other, and appends the result to its frame's tokens for that layer's self-attention (the message
token is dropped again before the MLP). The frames' class tokens, projected to the shared space, go
through the multi-frame integration transformer (MIT: learned frame positions, pre-norm blocks, a
residual around them) and are averaged into the video embedding.

The text side is CLIP's text transformer (`text_encoder.ClipTextEncoder`). The video-specific prompt
generator then adds to each text embedding what the text attends to among the clip's patch tokens
(averaged over frames): two pre-norm cross-attention blocks, scaled by a learned `alpha`. The logits
are the cosine similarities of the video embedding with each prompted text embedding, times
exp(logit_scale).

The official checkpoints (microsoft/xclip-*) are transformers directories: `config.json` and
`pytorch_model.bin` / `model.safetensors` under transformers' names; `convert_checkpoint` maps them.

There is no fixed set of classes: `forward(x, texts=[...])` scores any labels, and `set_labels` fixes a
label set (its text embeddings computed once) so that the model answers as a classifier over those
labels, `class_names` included, wherever the toolkit takes one.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from videozoo.data.input_config import InputConfig
from videozoo.models.base import VideoClassifier
from videozoo.models.layers import Attention, Block, CrossAttention, LearnedPositions, Mlp, PatchEmbed3d
from videozoo.models.spec import Metrics, ModelSpec, register
from videozoo.models.transformers.hf_config import Field, check_hf_config, rename_clip_layers
from videozoo.models.video_text.text_encoder import ClipTextEncoder, TextConfig, text_state_from_official
from videozoo.models.video_text.tokenizer import CONTEXT_LENGTH, tokenize
from videozoo.weights.errors import CheckpointError
from videozoo.weights.sources import WeightSource

# Label sets whose text embeddings `set_labels` keeps (switching back to one costs no text pass).
LABEL_SETS_KEPT = 16


class CrossFrameBlock(Block):
    """CLIP's ViT block with X-CLIP's message token: (B*T, N, D) -> (B*T, N, D) for clips of T frames."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, *, act: str, norm_eps: float) -> None:
        super().__init__(dim, num_heads, mlp_hidden, act=act, norm_eps=norm_eps)
        self.message_fc = nn.Linear(dim, dim)
        self.message_ln = nn.LayerNorm(dim, eps=norm_eps)
        self.message_attn = Attention(dim, num_heads)

    def forward(self, x: Tensor, mask: Tensor | None = None, rope: Tensor | None = None, *, frames: int = 1) -> Tensor:
        bt, n, d = x.shape
        msg = self.message_fc(x[:, 0]).reshape(bt // frames, frames, d)  # (B, T, D): one per frame
        msg = msg + self.drop_path(self.message_attn(self.message_ln(msg)))  # frames exchange information
        x = torch.cat([x, msg.reshape(bt, 1, d)], dim=1)  # (B*T, N+1, D)
        x = x + self.drop_path(self.attn(self.norm1(x), mask, rope))
        x = x[:, :n]  # the message token only takes part in this layer's attention
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PromptLayer(nn.Module):
    """Text embeddings (B, N, E) attend to the clip's patch tokens (B, P, E): pre-norm, no self-attention."""

    def __init__(self, dim: int, num_heads: int, *, act: str, norm_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=False)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, 4 * dim, act=act)

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        text = text + self.cross_attn(self.norm1(text), visual)
        return text + self.mlp(self.norm2(text))


class XClip(VideoClassifier):
    """X-CLIP: `forward(video, texts=[...])` -> logits (B, N); `encode_video`, `encode_text`, `logits`."""

    has_classifier = False
    fixed_input_size = True
    native_formats = frozenset({"videozoo", "safetensors"})

    def __init__(
        self,
        *,
        num_classes: int = 0,
        num_frames: int = 8,
        crop_size: int = 224,
        patch_size: int = 32,
        vision_dim: int = 768,
        vision_depth: int = 12,
        vision_heads: int = 12,
        vision_mlp: int = 3072,
        mit_dim: int = 512,
        mit_depth: int = 1,
        mit_heads: int = 8,
        mit_mlp: int = 2048,
        text_dim: int = 512,
        text_depth: int = 12,
        text_heads: int = 8,
        text_mlp: int = 2048,
        vocab_size: int = 49408,
        context_length: int = CONTEXT_LENGTH,
        projection_dim: int = 512,
        prompt_layers: int = 2,
        prompt_heads: int = 8,
        prompt_alpha: float = 0.1,
        act: str = "quick_gelu",
        prompt_act: str = "quick_gelu",
        vision_eps: float = 1e-5,
        text_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if num_classes:
            raise ValueError("X-CLIP has no classifier of its own: its classes are text labels (see set_labels)")
        if mit_dim != projection_dim:
            raise ValueError(
                f"the MIT works in the projection space: mit_dim {mit_dim} != projection_dim {projection_dim}"
            )
        self.num_frames, self.crop_size, self.patch_size = num_frames, crop_size, patch_size
        grid = crop_size // patch_size
        # -- CLIP's ViT, per frame
        self.patch_embed = PatchEmbed3d(3, vision_dim, (1, patch_size, patch_size), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(vision_dim))
        self.positions = LearnedPositions(grid * grid + 1, vision_dim)
        self.pre_norm = nn.LayerNorm(vision_dim, eps=vision_eps)
        self.blocks = nn.ModuleList(
            CrossFrameBlock(vision_dim, vision_heads, vision_mlp, act=act, norm_eps=vision_eps)
            for _ in range(vision_depth)
        )
        self.post_norm = nn.LayerNorm(vision_dim, eps=vision_eps)
        self.visual_projection = nn.Linear(vision_dim, projection_dim, bias=False)
        # -- the multi-frame integration transformer
        self.mit_positions = LearnedPositions(num_frames, mit_dim)
        self.mit_blocks = nn.ModuleList(
            Block(mit_dim, mit_heads, mit_mlp, act=act, norm_eps=vision_eps) for _ in range(mit_depth)
        )
        # -- the video-specific prompt generator and the patch tokens it reads
        self.prompts_visual_norm = nn.LayerNorm(vision_dim, eps=vision_eps)
        self.prompts_visual_projection = nn.Linear(vision_dim, projection_dim, bias=False)
        self.prompts_norm = nn.LayerNorm(projection_dim, eps=vision_eps)
        self.prompts_layers = nn.ModuleList(
            PromptLayer(projection_dim, prompt_heads, act=prompt_act, norm_eps=text_eps) for _ in range(prompt_layers)
        )
        self.prompts_alpha = nn.Parameter(torch.full((projection_dim,), prompt_alpha))
        # -- the text side and the temperature
        self.text = ClipTextEncoder(
            TextConfig(
                vocab_size=vocab_size,
                hidden_size=text_dim,
                intermediate_size=text_mlp,
                num_hidden_layers=text_depth,
                num_attention_heads=text_heads,
                max_position_embeddings=context_length,
                layer_norm_eps=text_eps,
                hidden_act=act,
                projection_dim=projection_dim,
            )
        )
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # log(1 / 0.07), CLIP's initial temperature
        self.context_length = context_length
        # A fixed label set (set_labels): its texts and their embeddings (N, E), not part of the weights.
        self.labels: list[str] | None = None
        self.register_buffer("label_embeds", None, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.normal_(self.class_embedding, std=0.02)

    # -- the two towers ------------------------------------------------------------------------------
    def _check_clip(self, x: Tensor) -> None:
        expected = (self.num_frames, self.crop_size, self.crop_size)
        if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f"X-CLIP takes normalised clips (B, 3, {', '.join(map(str, expected))}) (frames, height, width): "
                f"its frame and patch position tables are that size; got {tuple(x.shape)}"
            )

    def encode_video(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """`(video, patches)`: the video embedding (B, E), not normalised, and the frame-averaged patch
        tokens in the shared space (B, P, E) that the prompt generator reads."""
        self._check_clip(x)
        b, t = x.shape[0], x.shape[2]
        tokens = self.patch_embed(x)  # (B, T*P, D), frame by frame
        # Sizes written out (no -1), so that an empty batch still has a shape.
        tokens = tokens.reshape(b * t, tokens.shape[1] // t, tokens.shape[-1])  # (B*T, P, D)
        cls = self.class_embedding.to(tokens.dtype).expand(b * t, 1, -1)
        tokens = self.pre_norm(self.positions(torch.cat([cls, tokens], dim=1)))  # (B*T, 1+P, D)
        for block in self.blocks:
            tokens = block(tokens, frames=t)
        frames = self.visual_projection(self.post_norm(tokens[:, 0])).reshape(b, t, -1)  # (B, T, E)
        mixed = self.mit_positions(frames)
        for block in self.mit_blocks:
            mixed = block(mixed)
        video = (mixed + frames).mean(dim=1)  # (B, E)
        patches = self.prompts_visual_projection(self.prompts_visual_norm(tokens[:, 1:]))  # (B*T, P, E)
        return video, patches.reshape(b, t, *patches.shape[1:]).mean(dim=1)  # (B, P, E)

    def tokenize(self, texts: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        """`(input_ids, attention_mask)`, each int64 (N, 77): CLIP's byte-pair tokens of the texts."""
        return tokenize([texts] if isinstance(texts, str) else list(texts), context_length=self.context_length)

    def encode_text(self, texts: str | Sequence[str] | tuple[Tensor, Tensor]) -> Tensor:
        """Text embeddings (N, E) before the video-specific prompts: texts, or `(input_ids, attention_mask)`."""
        ids, mask = texts if isinstance(texts, tuple) and isinstance(texts[0], Tensor) else self.tokenize(texts)  # type: ignore[arg-type]
        # The padding after the longest text is cut: attention is causal and the embedding is read at the
        # end token, so no column after it changes the result, and short labels cost a tenth of 77 columns.
        length = max(1, int(mask.sum(dim=1).max())) if mask.numel() else ids.shape[1]
        ids, mask = ids[:, :length], mask[:, :length]
        device = self.logit_scale.device
        return self.text(ids.to(device), mask.to(device))

    def logits(self, video: Tensor, patches: Tensor, text: Tensor) -> Tensor:
        """(B, N) from `encode_video`'s outputs and `encode_text`'s (N, E): the prompted cosine similarities."""
        text = text.to(patches.dtype).unsqueeze(0).expand(video.shape[0], -1, -1)  # (B, N, E)
        visual = self.prompts_norm(patches)
        prompt = text
        for layer in self.prompts_layers:
            prompt = layer(prompt, visual)
        text = F.normalize(text + self.prompts_alpha * prompt, dim=-1)
        video = F.normalize(video, dim=-1)
        return self.logit_scale.exp() * torch.einsum("be,bne->bn", video, text)

    def forward(self, x: Tensor, texts: Sequence[str] | tuple[Tensor, Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """`logits_per_video` (B, N) of a normalised clip (B, 3, T, H, W) against `texts` (strings, or
        `(input_ids, attention_mask)`), or against the labels of `set_labels` when texts is None."""
        video, patches = self.encode_video(x)
        return self.logits(video, patches, self._text_embeds(texts))

    def video_embeds(self, x: Tensor) -> Tensor:
        """The L2-normalised video embeddings (B, E) (transformers' `video_embeds`)."""
        return F.normalize(self.encode_video(x)[0], dim=-1)

    # -- a label set: the model as a classifier -------------------------------------------------------
    def set_labels(self, labels: Sequence[str], template: str | None = None) -> XClip:
        """Fix the classes to `labels` (each put into `template`'s "{}" when given): their text embeddings
        are computed once here, and `forward(x)`, `scores`, `inference_outputs` answer over them."""
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("set_labels needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        texts = tuple(template.format(label) if template else label for label in labels)
        # A server switches between the label sets of its requests: the last few are kept embedded.
        cache = self.__dict__.setdefault("_label_sets", OrderedDict())
        embeds = cache.pop(texts, None)
        if embeds is None or embeds.device != self.logit_scale.device:
            with torch.no_grad():
                embeds = self.encode_text(list(texts))
        cache[texts] = embeds
        while len(cache) > LABEL_SETS_KEPT:
            cache.popitem(last=False)
        self.label_embeds = embeds
        self.labels = labels
        self.class_names = list(labels)
        return self

    def _text_embeds(self, texts: Sequence[str] | tuple[Tensor, Tensor] | None) -> Tensor:
        if texts is not None:
            return self.encode_text(texts)
        if self.label_embeds is None:
            raise ValueError(
                "X-CLIP scores text labels: pass texts=[...] or fix a label set with set_labels "
                "(on the command line: videozoo classify --labels ...)"
            )
        return self.label_embeds

    def forward_positions(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.video_embeds(x).unsqueeze(1)  # (B, 1, E): one "position", the clip

    def position_logits(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self(x).unsqueeze(1)  # (B, 1, N)

    def inference_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        video, patches = self.encode_video(x)
        logits = self.logits(video, patches, self._text_embeds(None))
        return logits, logits.float().softmax(dim=-1), F.normalize(video, dim=-1)

    def get_classifier(self) -> nn.Linear:
        raise TypeError("X-CLIP has no classifier layer: its classes are text labels (set_labels)")

    @property
    def num_classes(self) -> int:
        return len(self.labels or ())

    @property
    def num_features(self) -> int:
        return int(self.visual_projection.out_features)

    def reset_classifier(self, num_classes: int) -> None:
        raise TypeError("X-CLIP has no classifier to replace: give it other labels with set_labels")

    # -- the published files ------------------------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        """transformers' X-CLIP names (a directory, or its weight file alone) to this model's."""
        if "logit_scale" in state and any(k.startswith("vision_model.") for k in state):
            return _from_transformers(state)
        if fmt == "transformers":
            raise CheckpointError(f"{source}: a transformers directory without X-CLIP's vision_model.* weights")
        return super().convert_checkpoint(fmt, state, source=source)

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        # The top level and the two sub-configs are checked apart (each has its own field names);
        # every disagreement of the three is reported in one error.
        parts = ("text_config", "vision_config")
        checks = [({k: v for k, v in config.items() if k not in parts}, "xclip", _HF_FIELDS, "")]
        for part, fields, model_type in (
            ("vision_config", _HF_VISION_FIELDS, "xclip_vision_model"),
            ("text_config", _HF_TEXT_FIELDS, "xclip_text_model"),
        ):
            sub = {"model_type": model_type, **(config.get(part) or {})}
            checks.append((sub, model_type, fields, part))
        problems = []
        for sub, model_type, fields, part in checks:
            try:
                check_hf_config(
                    sub,
                    arch,
                    source=source,
                    model_type=model_type,
                    fields=fields,
                    training_only=_HF_TRAINING_ONLY,
                    fixed={"num_channels": 3},
                )
            except CheckpointError as e:
                where = f"{source}/config.json"
                problems.append(str(e).replace(where, f"{where} {part}", 1) if part else str(e))
        if problems:
            raise CheckpointError("\n".join(problems))


# config.json fields -> XClip arguments, with transformers' defaults where a field is absent.
_HF_FIELDS = {
    "projection_dim": Field("projection_dim", 512),
    "prompt_layers": Field("prompt_layers", 2),
    "prompt_num_attention_heads": Field("prompt_heads", 8),
    "prompt_alpha": Field("prompt_alpha", 0.1),
    "prompt_hidden_act": Field("prompt_act", "quick_gelu"),
}
_HF_VISION_FIELDS = {
    "hidden_size": Field("vision_dim", 768),
    "intermediate_size": Field("vision_mlp", 3072),
    "num_hidden_layers": Field("vision_depth", 12),
    "num_attention_heads": Field("vision_heads", 12),
    "mit_hidden_size": Field("mit_dim", 512),
    "mit_intermediate_size": Field("mit_mlp", 2048),
    "mit_num_hidden_layers": Field("mit_depth", 1),
    "mit_num_attention_heads": Field("mit_heads", 8),
    "patch_size": Field("patch_size", 32),
    "num_frames": Field("num_frames", 8),
    "image_size": Field("crop_size", 224),
    "layer_norm_eps": Field("vision_eps", 1e-5),
    "hidden_act": Field("act", "quick_gelu"),
}
_HF_TEXT_FIELDS = {
    "vocab_size": Field("vocab_size", 49408),
    "hidden_size": Field("text_dim", 512),
    "intermediate_size": Field("text_mlp", 2048),
    "num_hidden_layers": Field("text_depth", 12),
    "num_attention_heads": Field("text_heads", 8),
    "max_position_embeddings": Field("context_length", 77),
    "layer_norm_eps": Field("text_eps", 1e-5),
    "hidden_act": Field("act", "quick_gelu"),
}
# Initialisation, dropout (inactive in eval) and training-time settings; token ids of the tokenizer.
_HF_TRAINING_ONLY = frozenset(
    {
        "initializer_factor",
        "logit_scale_init_value",
        "prompt_attention_dropout",
        "prompt_projection_dropout",
        "attention_dropout",
        "dropout",
        "drop_path_rate",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
    }
)

# Top-level keys of the official file, and their place here. The int64 `position_ids` are aranges,
# not weights.
_TOP = {
    "logit_scale": "logit_scale",
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.pre_layernorm.weight": "pre_norm.weight",
    "vision_model.pre_layernorm.bias": "pre_norm.bias",
    "vision_model.post_layernorm.weight": "post_norm.weight",
    "vision_model.post_layernorm.bias": "post_norm.bias",
    "visual_projection.weight": "visual_projection.weight",
    "prompts_visual_layernorm.weight": "prompts_visual_norm.weight",
    "prompts_visual_layernorm.bias": "prompts_visual_norm.bias",
    "prompts_generator.layernorm.weight": "prompts_norm.weight",
    "prompts_generator.layernorm.bias": "prompts_norm.bias",
    "prompts_generator.alpha": "prompts_alpha",
}
_IGNORED = frozenset({"vision_model.embeddings.position_ids", "text_model.embeddings.position_ids"})
_PROMPT_KEY = re.compile(r"prompts_generator\.decoder\.(\d+)\.(.+)")
_PROMPT_PART = {
    "norm1": "norm1",
    "norm3": "norm2",
    "mlp.0": "mlp.fc1",
    "mlp.3": "mlp.fc2",
    "cross_attn.q_proj": "cross_attn.q",
    "cross_attn.proj": "cross_attn.proj",
}


def _from_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An official X-CLIP state dict under `XClip`'s names. A tensor of no known place keeps its file
    name (and an incomplete q/k/v set its names), so that loading lists it as unexpected."""
    state = {k: v for k, v in state.items() if k not in _IGNORED}
    out = text_state_from_official(state, own_prefix="text.")
    rest = {k: v for k, v in state.items() if not (k.startswith("text_model.") or k == "text_projection.weight")}
    rest = rename_clip_layers(
        rest,
        "vision_model.encoder.layers.",
        "blocks.",
        attentions=frozenset({"self_attn", "message_attn"}),
        keep=frozenset({"message_fc", "message_ln"}),
    )
    rest = rename_clip_layers(rest, "mit.encoder.layers.", "mit_blocks.")
    kv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in rest.items():
        if key in _TOP:
            out[_TOP[key]] = value
        elif key == "vision_model.embeddings.patch_embedding.weight" and value.ndim == 4:
            out["patch_embed.proj.weight"] = value.unsqueeze(2)  # (D, 3, p, p) -> (D, 3, 1, p, p)
        elif key == "vision_model.embeddings.position_embedding.weight" and value.ndim == 2:
            out["positions.weight"] = value.unsqueeze(0)  # (1+P, D) -> (1, 1+P, D)
        elif key == "mit.position_embedding":
            out["mit_positions.weight"] = value  # (1, T, E)
        elif key == "prompts_visual_projection" and value.ndim == 2:
            # Stored (D, E) and applied as x @ W; a Linear holds (E, D).
            out["prompts_visual_projection.weight"] = value.t()
        elif match := _PROMPT_KEY.fullmatch(key):
            index, suffix = match.groups()
            part, _, kind = suffix.rpartition(".")
            if part in ("cross_attn.k_proj", "cross_attn.v_proj"):
                kv.setdefault((index, kind), {})[part] = value
            elif part in _PROMPT_PART:
                out[f"prompts_layers.{index}.{_PROMPT_PART[part]}.{kind}"] = value
            else:
                out[key] = value
        else:
            out[key] = value
    for (index, kind), found in kv.items():
        k, v = found.get("cross_attn.k_proj"), found.get("cross_attn.v_proj")
        if k is not None and v is not None and k.shape[1:] == v.shape[1:]:
            out[f"prompts_layers.{index}.cross_attn.kv.{kind}"] = torch.cat([k, v], dim=0)  # rows k | v
        else:
            for part, value in found.items():
                out[f"prompts_generator.decoder.{index}.{part}.{kind}"] = value
    return out


# -- the registry --------------------------------------------------------------------------------

# X-CLIP normalises with ImageNet's statistics, not CLIP's: the official evaluation pipeline
# (microsoft/VideoX X-CLIP/datasets/build.py, img_norm_cfg) and transformers' X-CLIP processor both do.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PAPER = (
    "Ni et al., Expanding Language-Image Pretrained Models for General Video Recognition, ECCV 2022 (arXiv:2208.02816)"
)
_ZOO = "microsoft/VideoX X-CLIP/README.md (Model Zoo; test: 4 clips x 3 crops)"


def _input(num_frames: int) -> InputConfig:
    # The official test samples one frame from each of `num_frames` equal segments of the whole video
    # (4 such clips with shifted offsets x 3 crops of 224 at a short side of 224). The toolkit samples
    # at a fixed stride; this one makes a clip span about 10 s at 30 fps, a Kinetics video's length.
    return InputConfig(
        num_frames=num_frames,
        sampling_rate=max(1, round(300 / num_frames)),
        fps=30,
        short_side=224,
        crop_size=224,
        train_crop_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        test_clips=4,
        test_crops=3,
    )


# (name, Hub repository, patch, frames, Kinetics-400 top-1, top-5, GFLOPs as published, description)
_VARIANTS = (
    ("xclip_b32_8f", "xclip-base-patch32", 32, 8, 80.4, 95.0, 39.0, "trained on Kinetics-400"),
    ("xclip_b32_16f", "xclip-base-patch32-16-frames", 32, 16, 81.1, 95.5, 75.0, "trained on Kinetics-400"),
    ("xclip_b16_8f", "xclip-base-patch16", 16, 8, 83.8, 95.7, 145.0, "trained on Kinetics-400"),
    ("xclip_b16_16f", "xclip-base-patch16-16-frames", 16, 16, 84.7, 96.8, 287.0, "trained on Kinetics-400"),
    (
        "xclip_b16_zero_shot",
        "xclip-base-patch16-zero-shot",
        16,
        32,
        None,
        None,
        571.0,
        "trained on Kinetics-400 for transfer to unseen classes "
        "(zero-shot top-1 as published: HMDB-51 44.6, UCF-101 72.0, Kinetics-600 65.2)",
    ),
)

for _name, _repo, _patch, _frames, _top1, _top5, _gflops, _about in _VARIANTS:
    register(
        ModelSpec(
            name=_name,
            family="xclip",
            cls=XClip,
            arch={"patch_size": _patch, "num_frames": _frames},
            input=_input(_frames),
            weights={
                "kinetics400": WeightSource(
                    url=f"https://huggingface.co/microsoft/{_repo}/resolve/main/pytorch_model.bin",
                    format="transformers",
                    license="MIT",  # the microsoft/xclip-* model cards' licence (microsoft/VideoX's too)
                    cache_name=f"{_repo}.bin",
                    num_classes=0,
                )
            },
            metrics=Metrics(
                top1=_top1,
                top5=_top5,
                gflops=_gflops,
                params_m=None,
                views="4x3",
                source=_ZOO,
                flops_note="computed: the video side of one view (the text side runs once per label set); "
                "how the published figure counts the text side and prompts is not stated",
            ),
            num_classes=0,
            description=f"X-CLIP ViT-B/{_patch}, {_frames} frames, {_about}; classes are text labels",
            paper=_PAPER,
        )
    )
