"""torch.hub entry points: `torch.hub.load(REPO_DIR, "slow_r50", source="local", pretrained=True)`.

Every model of the registry is an entry; `pretrained=True` loads the model's default weights: the
official Kinetics-400 ones (downloaded once into $VIDEOZOO_HOME, default ~/.cache/videozoo), or for
motion_tiny the file shipped inside the package.
"""

dependencies = ["torch", "av", "numpy", "safetensors"]

from videozoo.models.factory import create_model as _create_model  # noqa: E402
from videozoo.models.registry import get_spec as _get_spec, list_models as _list_models  # noqa: E402


def _hub_entry(name: str):
    def entry(pretrained: bool = False, progress: bool = True, **kwargs):
        return _create_model(name, weights="default" if pretrained else None, progress=progress, **kwargs)

    spec = _get_spec(name)
    entry.__name__ = name
    entry.__doc__ = f"{spec.description or name}\n\npretrained: load the default weights ({spec.default_weights})."
    return entry


for _name in _list_models():
    globals()[_name] = _hub_entry(_name)
