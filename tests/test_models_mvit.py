"""MViT specifics: the fixed clip size and the MViT-B stage schedule."""

import pytest
import torch

from videozoo.models.mvit import MViT
from videozoo.models.registry import get_spec


def test_other_clip_size_is_refused_with_the_expected_size():
    model = MViT(num_classes=5, num_frames=4, crop_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 4, 64, 64)).shape == (2, 5)
        with pytest.raises(ValueError, match="4x64x64"):
            model(torch.randn(1, 3, 4, 96, 96))
        with pytest.raises(ValueError, match="4x64x64"):
            model(torch.randn(1, 3, 8, 64, 64))


def test_mvit_b_schedule():
    model = get_spec("mvit_base_16x4").build()
    widths, heads, q_strides, kv_strides = [], [], [], []
    for block in model.blocks:
        widths.append(block.attn.q.in_features)
        heads.append(block.attn.num_heads)
        q_strides.append(block.attn.pool_q.stride if block.attn.pool_q is not None else None)
        kv_strides.append(block.attn.pool_k.stride)
    assert widths == [96] + [192] * 2 + [384] * 11 + [768] * 2
    assert heads == [1] + [2] * 2 + [4] * 11 + [8] * 2
    assert [i for i, s in enumerate(q_strides) if s is not None] == [1, 3, 14]
    assert set(q_strides) - {None} == {(1, 2, 2)}
    assert kv_strides == [(1, 8, 8)] + [(1, 4, 4)] * 2 + [(1, 2, 2)] * 11 + [(1, 1, 1)] * 2
    assert model.blocks[0].proj.out_features == 192 and model.blocks[13].proj.out_features == 768
    assert model.num_features == 768
