"""The interface every model of the zoo shares.

A family class computes, for a clip, one feature vector per head position: the reference heads
pool with the training-size window and, when the test crop is larger (fully convolutional
testing), slide that window over the feature map and average the positions. Everything else
(logits, per-position softmax scores, pooled features, head replacement) is defined once here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch import Tensor

if TYPE_CHECKING:
    from videozoo.data.input_config import InputConfig

Clip = Tensor | list[Tensor]  # (B, 3, T, H, W), or [slow, fast] for two-pathway models


class VideoClassifier(nn.Module):
    """Base class. Subclasses implement `forward_positions` and name their classifier."""

    #: dotted attribute path of the final nn.Linear (also the checkpoint key prefix of the head)
    classifier_name: str = "head.proj"
    #: checkpoint formats whose keys are this class's own state-dict keys. The module tree of
    #: each family mirrors its official checkpoint, so official files load without renaming;
    #: videozoo's own files (torch.save or safetensors) use the same keys.
    native_formats: frozenset[str] = frozenset({"videozoo", "safetensors"})
    #: True where the architecture takes exactly one clip size (learned position embeddings).
    fixed_input_size: bool = False
    #: False for models whose classes are not a classifier layer of the weights (video-text models,
    #: which score labels written at run time): `create_model` loads them without looking for a head.
    has_classifier: bool = True
    #: Set by `create_model`: the registry name, the input the weights expect, the class names
    #: in index order (None where unknown).
    model_name: str | None = None
    input_config: InputConfig | None = None
    class_names: list[str] | None = None
    #: Set by `ModelSpec.build`: the family-class arguments the model was built with.
    arch: dict[str, Any] | None = None

    @classmethod
    def convert_checkpoint(cls, fmt: str, state: dict[str, Tensor], *, source: str) -> dict[str, Tensor]:
        """Map a checkpoint's tensors of format `fmt` to this class's keys (see weights.checkpoint).

        Families whose official files use other names (Caffe2 blobs, PySlowFast) override this.
        """
        if fmt in cls.native_formats:
            return state
        from videozoo.weights.checkpoint import CheckpointError

        raise CheckpointError(f"{source}: a {fmt} checkpoint cannot be loaded into {cls.__name__}")

    @classmethod
    def check_config(cls, config: dict[str, Any], arch: dict[str, Any], *, source: str) -> None:
        """Check a publisher's architecture config (a transformers directory's config.json) against
        `arch`, the arguments the model will be built with (and `num_classes`, the classifier rows in
        the file); raise CheckpointError naming the file and the field that disagrees. Families that
        load such directories override this."""
        from videozoo.weights.checkpoint import CheckpointError

        raise CheckpointError(f"{source}: {cls.__name__} does not load a checkpoint that comes with a config.json")

    def forward_positions(self, x: Clip) -> Tensor:
        """Per-position features before the classifier: (B, P, D); P = 1 at the training crop."""
        raise NotImplementedError

    # Dropout before the classifier, as in the references; subclasses set `self.head_dropout`.
    def _dropout(self, feats: Tensor) -> Tensor:
        drop = getattr(self, "head_dropout", None)
        return drop(feats) if drop is not None else feats

    def forward_features(self, x: Clip) -> Tensor:
        """Pooled features before the classifier: (B, D), the mean over head positions."""
        return self.forward_positions(x).mean(dim=1)

    def position_logits(self, x: Clip) -> Tensor:
        """(B, P, num_classes): the classifier applied at every head position."""
        return self.get_classifier()(self._dropout(self.forward_positions(x)))

    def forward(self, x: Clip) -> Tensor:
        """Logits (B, num_classes), averaged over head positions."""
        return self.position_logits(x).mean(dim=1)

    def scores(self, x: Clip) -> Tensor:
        """The official evaluation's scores: softmax per head position, averaged over positions."""
        return self.position_logits(x).float().softmax(dim=-1).mean(dim=1)

    def inference_outputs(self, x: Clip) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, scores, features) from one pass: what `forward`, `scores` and `forward_features` give."""
        positions = self.forward_positions(x)  # (B, P, D)
        position_logits = self.get_classifier()(self._dropout(positions))  # (B, P, K)
        return position_logits.mean(dim=1), position_logits.float().softmax(dim=-1).mean(dim=1), positions.mean(dim=1)

    # -- layer structure (layer-wise learning-rate decay) --------------------------------------
    def layer_blocks(self) -> list[nn.Module] | None:
        """The blocks a clip goes through, in order; None where the family declares no layer
        structure (the CNNs). Transformer families override this."""
        return None

    def layer_ids(self) -> dict[str, int] | None:
        """Parameter name -> layer id, as the BEiT / VideoMAE fine-tuning recipes number layers:
        block i is layer i + 1; what is registered before the first block (patch embedding,
        position tables, class token) is layer 0; what comes after the last (final norm, attentive
        probe, classifier) is layer depth + 1; a module between blocks (Swin's patch merging) takes
        the layer of the block before it. None where `layer_blocks` is None."""
        blocks = self.layer_blocks()
        if blocks is None:
            return None
        depth = len(blocks)
        owner = {id(p): i + 1 for i, block in enumerate(blocks) for p in block.parameters()}
        named = list(self.named_parameters())
        last = max((k for k, (_, p) in enumerate(named) if id(p) in owner), default=-1)
        ids, layer = {}, 0
        for k, (name, p) in enumerate(named):
            layer = owner.get(id(p), depth + 1 if k > last else layer)
            ids[name] = layer
        return ids

    # -- the classifier ---------------------------------------------------------------------
    def get_classifier(self) -> nn.Linear:
        module: nn.Module = self
        for part in self.classifier_name.split("."):
            module = getattr(module, part)
        assert isinstance(module, nn.Linear)
        return module

    @property
    def num_classes(self) -> int:
        return self.get_classifier().out_features

    @property
    def num_features(self) -> int:
        return self.get_classifier().in_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for `num_classes` classes."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        nn.init.normal_(new.weight, std=0.01)
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        new = new.to(device=old.weight.device, dtype=old.weight.dtype)
        parent: nn.Module = self
        *path, last = self.classifier_name.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, last, new)


def init_fresh_weights(model: nn.Module) -> None:
    """The references' initialisation of a fresh model: He-normal (fan-out) 3D convs with zero bias,
    BatchNorm at identity, and a small-normal classifier with zero bias. A model built on the meta
    device (to be filled from a checkpoint) is left as it is: there is nothing to draw."""
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def positions_from_map(fmap: Tensor, window: tuple[int, int, int] | None) -> Tensor:
    """Average-pool a (B, D, T, H, W) map with the training window, stride 1; return (B, P, D).

    `window` None means global average pooling (one position). A window larger than the map
    is clipped to it, as the references do when the test input is smaller than the training one.
    """
    if window is None:
        return fmap.mean(dim=(2, 3, 4)).unsqueeze(1)
    # Plain ints: a traced graph (OpenVINO, ONNX) then holds a constant kernel, not a size computation.
    k = tuple(min(w, int(s)) for w, s in zip(window, fmap.shape[2:], strict=True))
    # CPU average pooling has no bf16 kernel for channels-first maps; the map is small: pool in float32.
    pooled = torch.nn.functional.avg_pool3d(fmap.float(), kernel_size=k, stride=1).to(fmap.dtype)
    return pooled.flatten(2).transpose(1, 2)
