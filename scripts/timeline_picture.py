"""Draw docs/img/timeline.png: the timeline of four synthetic motions of 4 s each, scored by motion_tiny.

    python scripts/timeline_picture.py [--out docs/img/timeline.png] [--model motion_tiny]

Prints the segments and how far each boundary is from the true one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("move_left", "zoom_in", "rotate_cw", "move_down")
SECONDS, FPS, SIZE = 4.0, 15, 112


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "timeline.png"))
    ap.add_argument("--model", default="motion_tiny")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import videozoo
    from videozoo.data.synth import render_sequence, write_video

    frames, _ = render_sequence(CLASSES, seconds=SECONDS, fps=FPS, size=(SIZE, SIZE), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "four_motions.mp4", frames, fps=FPS)
        result = videozoo.timeline(
            str(video), model=args.model, weights=args.weights, precision="fp32", out=Path(tmp) / "out"
        )
        result.video = "four_motions.mp4"
        result.save(Path(tmp) / "out")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "out" / "timeline.png", args.out)
    truth = [SECONDS * i for i in range(1, len(CLASSES))]
    for s in result.segments:
        print(f"{s.start:6.2f} {s.end:6.2f}  {s.label:12s} {s.score:.2f}")
    if len(result.segments) == len(CLASSES):
        errors = [abs(s.start - t) for s, t in zip(result.segments[1:], truth, strict=False)]
        print("boundary errors (s):", ", ".join(f"{e:.2f}" for e in errors))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
