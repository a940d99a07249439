"""Accuracy figures of an evaluation, from its per-video records.

Video level: the video's score is the mean of its views' scores (each view's score being the
mean over head positions of the per-position softmax). Clip level: every view on its own (with
1x1 views the two agree). Top-5 with fewer than 5 classes counts every class.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean over the classes present of each class's recall."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((np.diag(cm)[present] / support[present]).mean())


def summarize(records: list[dict], num_classes: int) -> tuple[dict, np.ndarray | None]:
    """Metrics of the labelled, successful records; returns (metrics, video-level confusion matrix).

    A record carries its video-level `pred` and `video_top5`, and `view_top5` for each view.
    """
    ok = [r for r in records if r.get("error") is None]
    failed = [r for r in records if r.get("error") is not None]
    labelled = [r for r in ok if r.get("label") is not None]
    out: dict = {"videos": len(records), "evaluated": len(ok), "failed": len(failed), "labelled": len(labelled)}
    if failed:
        out["failures"] = [{"video": r["video"], "error": r["error"]} for r in failed]
    if not labelled:
        return out, None
    labels = np.array([r["label"] for r in labelled])
    preds = np.array([r["pred"] for r in labelled])
    video_top5 = np.array([r["label"] in r["video_top5"] for r in labelled])
    clip_top1 = [v[0] == r["label"] for r in labelled for v in r["view_top5"]]
    clip_top5 = [r["label"] in v for r in labelled for v in r["view_top5"]]
    cm = confusion_matrix(preds, labels, num_classes)
    out.update(
        {
            "video_top1": float((preds == labels).mean()),
            "video_top5": float(video_top5.mean()),
            "clip_top1": float(np.mean(clip_top1)),
            "clip_top5": float(np.mean(clip_top5)),
            "mean_class_accuracy": mean_class_accuracy(cm),
            "views_scored": len(clip_top1),
        }
    )
    return out, cm


def plot_confusion(cm: np.ndarray, classes: list[str], path, title: str = "") -> None:
    """A confusion-matrix PNG (rows: true class, columns: predicted), normalised per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.35 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(n), classes, fontsize=8)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (video level)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
