"""X3D specifics: the head's training-size window, and the widths set by channel rounding."""

import pytest
import torch

import videozoo


@pytest.fixture(scope="module")
def x3d_xs():
    torch.manual_seed(0)
    return videozoo.create_model("x3d_xs")


@pytest.mark.parametrize("crop, positions", [(160, 1), (182, 4), (96, 1)])
def test_head_window_positions(x3d_xs, crop, positions):
    # Trained at 160 px: a 5x5 window over the 1/32 map; at 182 px the map is 6x6 (2x2 positions);
    # smaller inputs are pooled whole.
    x = torch.randn(1, 3, 4, crop, crop)
    with torch.inference_mode():
        feats = x3d_xs.forward_positions(x)
    assert feats.shape == (1, positions, 2048)
    assert (feats >= 0).all()  # the head ends with a ReLU


def test_scores_average_per_position_softmax(x3d_xs):
    x = torch.randn(2, 3, 4, 182, 182)
    with torch.inference_mode():
        per_position = x3d_xs.position_logits(x).softmax(dim=-1)
        scores = x3d_xs.scores(x)
    assert per_position.shape == (2, 4, 400)
    torch.testing.assert_close(scores, per_position.mean(dim=1))
    torch.testing.assert_close(scores.sum(dim=-1), torch.ones(2))


def test_widths_and_depths():
    model = videozoo.get_spec("x3d_l").build()
    stages = model.blocks[1:5]
    assert [len(s.res_blocks) for s in stages] == [5, 10, 25, 15]
    assert [s.res_blocks[0].branch2.conv_c.out_channels for s in stages] == [24, 48, 96, 192]
    assert [s.res_blocks[0].branch2.conv_a.out_channels for s in stages] == [54, 108, 216, 432]
    # squeeze-excitation on blocks 0, 2, 4, ...; its width rounds 432 / 16 = 27 up to 32
    last = stages[-1].res_blocks
    assert last[0].branch2.norm_b[1].block[0].out_channels == 32
    assert isinstance(last[1].branch2.norm_b[1], torch.nn.Identity)
    # the first stage keeps the stem's width: a strided shortcut conv without a norm
    first = stages[0].res_blocks[0]
    assert first.branch1_conv is not None and first.branch1_norm is None
