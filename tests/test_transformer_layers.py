"""The shared transformer blocks of `videozoo.models.layers`, against direct computations."""

import numpy as np
import pytest
import torch

from videozoo.models.layers import (
    Attention,
    Block,
    CrossAttention,
    DropPath,
    LearnedPositions,
    PatchEmbed3d,
    activation,
    causal_mask,
    sincos_table,
)


def test_attention_matches_separate_projections_with_query_and_value_bias():
    # The fused projection with a zero key bias computes what three Linear layers do.
    torch.manual_seed(0)
    attn = Attention(32, 4, bias="qv").eval()
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 10, 32)
    w_q, w_k, w_v = attn.qkv.weight.chunk(3)
    q = (x @ w_q.T + attn.q_bias).reshape(2, 10, 4, 8).transpose(1, 2)
    k = (x @ w_k.T).reshape(2, 10, 4, 8).transpose(1, 2)
    v = (x @ w_v.T + attn.v_bias).reshape(2, 10, 4, 8).transpose(1, 2)
    weights = (q @ k.transpose(-1, -2) / 8**0.5).softmax(-1)
    ref = attn.proj((weights @ v).transpose(1, 2).reshape(2, 10, 32))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)


def test_causal_mask_lets_a_token_see_only_itself_and_those_before():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        out = attn(x, causal_mask(6))
        # Token i of the masked pass is the unmasked pass over tokens 0..i.
        for i in range(6):
            torch.testing.assert_close(out[:, i], attn(x[:, : i + 1])[:, i], rtol=1e-5, atol=1e-5)
    mask = causal_mask(3)
    assert mask.shape == (1, 1, 3, 3) and (mask[0, 0].diagonal() == 0).all() and mask[0, 0, 0, 1] < -1e30


def test_cross_attention_matches_a_direct_computation():
    torch.manual_seed(0)
    attn = CrossAttention(32, 4, qkv_bias=False).eval()
    assert attn.q.bias is None and attn.kv.bias is None and attn.proj.bias is not None
    x, ctx = torch.randn(2, 3, 32), torch.randn(2, 7, 32)
    w_k, w_v = attn.kv.weight.chunk(2)
    q = (x @ attn.q.weight.T).reshape(2, 3, 4, 8).transpose(1, 2)
    k = (ctx @ w_k.T).reshape(2, 7, 4, 8).transpose(1, 2)
    v = (ctx @ w_v.T).reshape(2, 7, 4, 8).transpose(1, 2)
    weights = (q @ k.transpose(-1, -2) / 8**0.5).softmax(-1)  # (2, 4, 3, 7)
    ref = attn.proj((weights @ v).transpose(1, 2).reshape(2, 3, 32))
    torch.testing.assert_close(attn(x, ctx), ref, rtol=1e-5, atol=1e-5)


def test_gelu_fast_is_the_tanh_approximation():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    fast = 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
    torch.testing.assert_close(activation("gelu_fast")(x), fast, rtol=1e-9, atol=1e-9)
    assert (activation("gelu")(x) - fast).abs().max() > 1e-4  # not the exact GELU


def test_sincos_table_is_the_float64_table_rounded_once():
    n, d = 50, 12
    angle = np.array([[p / np.power(10000, 2 * (j // 2) / d) for j in range(d)] for p in range(n)])
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    assert torch.equal(sincos_table(n, d), torch.from_numpy(angle).float())
    with torch.device("meta"):
        assert not sincos_table(4, 8).is_meta  # real values even for a model built on meta


def test_patch_embed_orders_tokens_time_major():
    embed = PatchEmbed3d(3, 8, (2, 4, 4))
    x = torch.randn(1, 3, 4, 8, 12)
    tokens = embed(x)
    assert embed.grid(4, 8, 12) == (2, 2, 3) and tokens.shape == (1, 12, 8)
    # Token (t, h, w) = 6t + 3h + w is the projection of that tubelet.
    tubelet = x[0, :, 2:4, 4:8, 8:12]  # (C, 2, 4, 4)
    direct = (embed.proj.weight * tubelet).sum(dim=(1, 2, 3, 4)) + embed.proj.bias
    torch.testing.assert_close(tokens[0, 6 + 3 + 2], direct, rtol=1e-5, atol=1e-5)


def test_drop_path_is_identity_in_eval_and_drops_whole_samples_in_training():
    drop = DropPath(0.5)
    x = torch.ones(64, 5, 3)
    assert drop.eval()(x) is x
    out = drop.train()(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert all(len(row.unique()) == 1 for row in per_sample)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_block_and_learned_positions():
    torch.manual_seed(0)
    block = Block(16, 2, 32, attn_bias="qv", act="gelu_fast", norm_eps=1e-6).eval()
    x = torch.randn(2, 7, 16)
    h = x + block.attn(block.norm1(x))
    torch.testing.assert_close(block(x), h + block.mlp(block.norm2(h)))
    pos = LearnedPositions(7, 16)
    torch.testing.assert_close(pos(x), x + pos.weight)
    with pytest.raises(ValueError, match="7 tokens"):
        LearnedPositions(8, 16)(x)
    with pytest.raises(ValueError, match="unknown activation"):
        activation("swish2")
