"""Transformer building blocks written once and shared by the video transformer families.

Nothing here knows a family or a checkpoint layout: the families wire these blocks and map their
official key names onto them.
"""

from videozoo.models.layers.attention import Attention, CrossAttention, causal_mask
from videozoo.models.layers.block import Block
from videozoo.models.layers.drop_path import DropPath
from videozoo.models.layers.mlp import Mlp, activation
from videozoo.models.layers.patch_embed import PatchEmbed3d
from videozoo.models.layers.pos_embed import LearnedPositions, sincos_table
from videozoo.models.layers.rope import apply_rope, rope_band, rope_tables

__all__ = [
    "Attention",
    "Block",
    "CrossAttention",
    "DropPath",
    "LearnedPositions",
    "Mlp",
    "PatchEmbed3d",
    "activation",
    "apply_rope",
    "causal_mask",
    "rope_band",
    "rope_tables",
    "sincos_table",
]
