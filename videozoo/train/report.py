"""What a run tells about itself: metrics.csv, TensorBoard scalars, a PNG of the curves, progress.

Only the main process (rank 0) writes; the others construct a disabled reporter.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path

COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
    "samples_per_s",
    "skipped_videos",
)


def log(message: str, *, enabled: bool = True) -> None:
    if enabled:
        print(f"train: {message}", file=sys.stderr, flush=True)


class SkipWarnings:
    """One warning per undecodable video, however many epochs meet it (each process its own)."""

    def __init__(self) -> None:
        self.warned: set[str] = set()

    def note(self, skipped) -> None:
        for s in skipped:
            if s.path not in self.warned:
                self.warned.add(s.path)
                log(f"warning: skipped {s.path}: {s.reason}")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class RunReport:
    """Per-epoch rows to ``metrics.csv`` (and TensorBoard, and ``training.png``).

    ``history`` holds the rows of epochs already done (a resumed run): the CSV is rewritten from
    them so it never holds rows of steps that were trained again after the interruption.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        enabled: bool,
        tensorboard: bool = True,
        plot: bool = True,
        history: list[dict] | None = None,
        resume_step: int = 0,
    ):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.rows: list[dict] = [dict(r) for r in (history or [])]
        self.plot_enabled = plot
        self.csv_path = self.out_dir / "metrics.csv"
        self.plot_path = self.out_dir / "training.png"
        self._tb = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for row in self.rows:
                writer.writerow([_cell(row.get(c)) for c in COLUMNS])
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log("tensorboard is not installed; no TensorBoard logs")
            else:
                # Scalars are logged against the optimizer step; purge_step drops the events an
                # interrupted run wrote after the step it is resumed from.
                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=resume_step or None)

    def add_epoch(self, row: dict, step: int) -> None:
        """Record one epoch's row; `step` is the optimizer step count at its end."""
        self.rows.append(dict(row))
        if not self.enabled:
            return
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([_cell(row.get(c)) for c in COLUMNS])
        if self._tb is not None:
            for key in COLUMNS:
                value = row.get(key)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    self._tb.add_scalar(f"epoch/{key}", value, step)
            self._tb.flush()
        if self.plot_enabled:
            write_plot(self.rows, self.plot_path)

    def add_step(self, step: int, loss: float, lr: float) -> None:
        if self._tb is not None:
            self._tb.add_scalar("step/train_loss", loss, step)
            self._tb.add_scalar("step/lr", lr, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def write_plot(rows: list[dict], path: str | Path) -> Path | None:
    """Loss and accuracy per epoch, training and validation, as a PNG (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = Path(path)
    epochs = [r["epoch"] for r in rows]

    def series(key):
        pts = [
            (e, r.get(key))
            for e, r in zip(epochs, rows, strict=True)
            if r.get(key) is not None and not math.isnan(r[key])
        ]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy (%)")):
        for split, style in (("train", "-o"), ("val", "-s")):
            x, y = series(f"{split}_{kind}")
            if x:
                ax.plot(x, y, style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0, 100)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


class Progress:
    """A tqdm bar with samples/s on a terminal; otherwise a log line every `log_every` steps."""

    def __init__(
        self, mode: str, *, enabled: bool, total: int, epoch: int, epochs: int, log_every: int, initial: int = 0
    ):
        self.enabled = enabled and mode != "none"
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = None
        self.epoch, self.epochs, self.total = epoch, epochs, total
        self.log_every = log_every
        self.samples = 0
        self.t0 = time.perf_counter()
        self.done = initial
        if self.enabled and use_bar:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=total,
                    initial=initial,
                    desc=f"epoch {epoch + 1}/{epochs}",
                    unit="batch",
                    leave=False,
                    dynamic_ncols=True,
                )

    def update(self, samples: int, loss: float, lr: float) -> None:
        self.samples += samples
        self.done += 1
        if not self.enabled:
            return
        rate = self.samples / max(time.perf_counter() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", samples_per_s=f"{rate:.1f}", refresh=False)
            self.bar.update(1)
        elif self.done % self.log_every == 0 or self.done == self.total:
            log(
                f"epoch {self.epoch + 1}/{self.epochs} batch {self.done}/{self.total} "
                f"loss {loss:.4f} lr {lr:.4g} {rate:.1f} samples/s"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
