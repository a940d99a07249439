"""The torchvision families: what their layouts and checkpoint conversion add to the generic tests."""

import torch
import torch.nn.functional as F

import videozoo
from videozoo.models.registry import get_spec


def _layer4_time(name: str, frames: int) -> int:
    model = get_spec(name).build(num_classes=5).eval()
    x = torch.randn(1, 3, frames, 32, 32)
    with torch.inference_mode():
        fmap = model.layer4(model.layer3(model.layer2(model.layer1(model.stem(x)))))
    return fmap.shape[2]


def test_video_resnet_temporal_strides():
    # R3D and R(2+1)D halve time in stages 2-4; MC3's 2D stages keep it.
    assert _layer4_time("r3d_18", 8) == 1
    assert _layer4_time("r2plus1d_18", 8) == 1
    assert _layer4_time("mc3_18", 8) == 8


def test_r2plus1d_midplanes():
    model = get_spec("r2plus1d_18").build()
    # (cin * cout * 27) // (cin * 9 + 3 * cout), with cin the block's input width in both convs.
    assert model.layer1[0].conv1[0][0].out_channels == 144
    assert model.layer2[0].conv1[0][0].out_channels == 230
    assert model.layer2[0].conv2[0][0].out_channels == 230
    assert model.layer2[1].conv1[0][0].out_channels == 288


def test_s3d_torchvision_head_conversion_and_positions(tmp_path):
    torch.manual_seed(0)
    model = get_spec("s3d").build(num_classes=7).eval()
    state = model.state_dict()
    conv_weight = state["classifier.1.weight"].reshape(7, 1024, 1, 1, 1)
    official = {**state, "classifier.1.weight": conv_weight}
    path = tmp_path / "s3d_official.pth"
    torch.save(official, path)  # torchvision's layout: a bare state dict with a 1x1x1 conv head
    loaded = videozoo.create_model("s3d", weights=str(path))
    assert loaded.get_classifier().weight.shape == (7, 1024)

    # 21 frames give a 3x7x7 map: two head positions whose logits the reference averages.
    x = torch.randn(1, 3, 21, 224, 224)
    maps = []
    hook = loaded.features.register_forward_hook(lambda module, args, out: maps.append(out))
    with torch.inference_mode():
        out = loaded(x)
        hook.remove()
        assert maps[0].shape[2:] == (3, 7, 7)
        pooled = F.avg_pool3d(maps[0], (2, 7, 7), stride=1)  # (1, 1024, 2, 1, 1)
        expected = F.conv3d(pooled, conv_weight, state["classifier.1.bias"]).mean(dim=(2, 3, 4))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

    # videozoo's own files hold the flattened classifier and load back unchanged.
    own = videozoo.save_model(loaded, tmp_path / "s3d.safetensors")
    again = videozoo.create_model("s3d", weights=str(own))
    torch.testing.assert_close(again.get_classifier().weight, loaded.get_classifier().weight)
