"""MotionNet: its correlation layer computes what it says, and sees where a pattern went."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videozoo.models.motionnet import Correlation, MotionNet


def reference_correlation(features: torch.Tensor, r: int) -> torch.Tensor:
    """The definition, one displacement at a time: cos(f_t(x), f_t+1(x + d)), zero past the edges."""
    f = F.normalize(features, dim=1)
    now, later = f[:, :, :-1], f[:, :, 1:]
    height, width = now.shape[-2:]
    later = F.pad(later, (r, r, r, r))
    maps = [
        (now * later[..., dy : dy + height, dx : dx + width]).sum(1)
        for dy in range(2 * r + 1)
        for dx in range(2 * r + 1)
    ]
    return torch.stack(maps, 1)


@pytest.mark.parametrize("radius, shape", [(3, (2, 5, 4, 6, 9)), (1, (1, 3, 2, 7, 5)), (2, (3, 8, 3, 4, 4))])
def test_correlation_matches_its_definition(radius, shape):
    features = torch.randn(shape, generator=torch.Generator().manual_seed(radius))
    out = Correlation(radius)(features)
    assert out.shape == (shape[0], (2 * radius + 1) ** 2, shape[2] - 1, shape[3], shape[4])
    torch.testing.assert_close(out, reference_correlation(features, radius), rtol=0, atol=1e-5)
    # Its gradient is the definition's too.
    a = features.clone().requires_grad_()
    b = features.clone().requires_grad_()
    weights = torch.randn(out.shape)
    (Correlation(radius)(a) * weights).sum().backward()
    (reference_correlation(b, radius) * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_correlation_peaks_where_the_pattern_went():
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(1, 6, 1, 12, 12, generator=g)
    moved = torch.roll(frame, shifts=(-1, 2), dims=(-2, -1))  # up one cell, right two
    out = Correlation(3)(torch.cat([frame, moved], dim=2))[0, :, 0]  # (49, H, W)
    best = out[:, 4:8, 4:8].flatten(1).argmax(0)  # inner cells, away from the wrap of roll
    dy, dx = best // 7 - 3, best % 7 - 3
    assert (dy == -1).all() and (dx == 2).all()
    assert torch.allclose(out.amax(0)[4:8, 4:8], torch.ones(4, 4))


def test_head_window_and_bad_arguments():
    model = MotionNet(num_frames=8, crop_size=64, num_classes=5).eval()
    assert model.head_window == (2, 2, 2)
    with torch.no_grad():
        # A 96 crop leaves a (2, 3, 3) map: the (2, 2, 2) window fits at 1 x 2 x 2 positions.
        assert model.position_logits(torch.zeros(1, 3, 8, 96, 96)).shape == (1, 4, 5)
    assert MotionNet(num_frames=16).head_window == (4, 2, 2)
    with pytest.raises(ValueError, match="at least 2"):
        MotionNet(num_frames=1)
    with pytest.raises(ValueError, match="radius"):
        Correlation(0)
