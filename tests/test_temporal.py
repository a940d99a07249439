"""Temporal modelling is real.

On videos that only the order of frames tells apart (each class is the exact time reversal of its
opposite, `videozoo.data.synth`), a 3D model (I3D-R50) trained from scratch separates the opposite
motions: left from right, zoom in from zoom out. C2D-R50 — the same network with 2D convolutions,
frames pooled without their order — trained with the same recipe on the same clips cannot: whatever
it learns about a video it learns equally about its time reversal, so within each pair it stays at
chance, however well it learns anything else.

Both models are the zoo's, at 1/8 width on 8x48x48 clips (about two minutes of training each on two
CPU cores). The criterion is accuracy within each opposite pair, counted over the held-out videos
predicted as either class of their pair; which pair a video belongs to is a different question, and
confusions across pairs do not enter it.
"""

import numpy as np
import pytest

from videozoo.data.synth import make_dataset
from videozoo.jobs.evaluate import EvalConfig, evaluate, read_records
from videozoo.jobs.metrics import confusion_matrix
from videozoo.train import TrainConfig, train

CLASSES = ("move_left", "move_right", "zoom_in", "zoom_out")
PAIRS = {"left/right": (0, 1), "zoom in/out": (2, 3)}
pytestmark = pytest.mark.slow  # minutes of training: `make test-all`


def synthesise(root):
    """200 classic videos per class, 16 frames of 48x48 at 15 fps; a fifth held out."""
    return make_dataset(
        root,
        classes=CLASSES,
        videos_per_class=200,
        val_fraction=0.2,
        size=(48, 48),
        num_frames=16,
        fps=15,
        seed=0,
        workers=2,
    )


def train_config(data, out, model: str) -> TrainConfig:
    """The same recipe for both models: from scratch, 1/8 width, 8x48x48 clips, AdamW, 40 epochs."""
    return TrainConfig(
        model=model,
        data=str(data.train_list),
        val_data=str(data.val_list),
        out=str(out),
        classes=str(data.classes_file),
        epochs=40,
        batch_size=16,
        optimizer="adamw",
        lr=0.002,
        warmup_epochs=1.0,
        schedule="cosine",
        num_frames=8,
        sampling_rate=2,
        fps=15,
        crop_size=48,
        short_side=48,
        arch={"width": 8},
        dropout=0.0,
        # A mirror image turns move_left into move_right: no flips.
        hflip=0.0,
        cache_videos=True,
        num_workers=0,
        progress="none",
        tensorboard=False,
        plot=False,
    ).validate()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesise(tmp_path_factory.mktemp("motion"))


@pytest.fixture(scope="module")
def confusions(data, tmp_path_factory):
    """Held-out confusion matrix (true, predicted) of each model, trained the same way."""
    out = {}
    for model in ("i3d_r50", "c2d_r50"):
        run = tmp_path_factory.mktemp(model)
        result = train(train_config(data, run / "train", model))
        evaluate(
            EvalConfig(
                model=model,
                data=str(data.val_list),
                out=str(run / "eval"),
                weights=str(result.model_path),
                views="1x1",
                workers=0,
            )
        )
        records = read_records(run / "eval" / "predictions.jsonl")
        cm = confusion_matrix(
            np.array([r["pred"] for r in records]), np.array([r["label"] for r in records]), len(CLASSES)
        )
        assert cm.sum() == data.num_val
        out[model] = cm
    return out


def within_pair_accuracy(cm: np.ndarray, pair: tuple[int, int]) -> tuple[float, int]:
    """(share right, count) over the videos of the pair that were predicted as one of its classes."""
    a, b = pair
    right = cm[a, a] + cm[b, b]
    count = right + cm[a, b] + cm[b, a]
    return right / max(count, 1), int(count)


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_3d_model_tells_opposite_motions_apart(confusions, pair):
    cm = confusions["i3d_r50"]
    acc, count = within_pair_accuracy(cm, PAIRS[pair])
    per_pair = cm[list(PAIRS[pair])].sum()
    # Most of the pair's videos are predicted within it, so the share below is about most videos.
    assert count >= 0.7 * per_pair, f"I3D rarely predicts {pair} for its videos:\n{cm}"
    assert acc >= 0.9, f"I3D confuses {pair}: {acc:.0%} of {count} right\n{cm}"


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_2d_model_confuses_opposite_motions(confusions, pair):
    cm = confusions["c2d_r50"]
    acc, count = within_pair_accuracy(cm, PAIRS[pair])
    assert count >= 20, f"too few {pair} predictions to judge:\n{cm}"
    # Chance is 50%: allow 3.5 binomial standard deviations above it (a 1-in-4000 false alarm).
    limit = 0.5 + 3.5 * 0.5 / count**0.5
    assert acc <= limit, (
        f"C2D tells {pair} apart ({acc:.0%} of {count} > {limit:.0%}), which an orderless model cannot\n{cm}"
    )
