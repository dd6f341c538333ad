"""Temporal consistency benchmark: warm starts compared on the same clips, style and settings.

    python bench/temporal.py [--quick] [--frames 40] [--size 128] [--weights random]

Prints, per clip, the masked warping error (vstyle.metrics, Lai et al. 2018) of each mode, its
ratio to `--warm-start none` and to the input's own error (a record only: added texture inflates
it, see FACTS.md), the same error between frames 4 apart (long-term consistency, flow straight
from t-4 to t), and the time per frame. Frames are measured before any lossy encoding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import vstyle  # noqa: E402
from vstyle import media, metrics  # noqa: E402
from vstyle.vgg import resolve_device  # noqa: E402

MODES = [  # (label, options)
    ("none", dict(warm_start="none", temporal_weight=0.0)),
    ("previous", dict(warm_start="previous", temporal_weight=0.0)),
    ("flow", dict(warm_start="flow", temporal_weight=0.0)),
    ("flow + temporal loss 10", dict(warm_start="flow", temporal_weight=10.0)),
    ("flow + temporal loss 100", dict(warm_start="flow", temporal_weight=100.0)),
    # previous' budget: it stops after ~10 iterations (its loss flattens at once, smeared)
    ("default, <= 10 iterations", dict(warm_start="flow", temporal_weight=10.0, iterations=10)),
    ("default + long-term 1,2,4", dict(warm_start="flow", temporal_weight=10.0,
                                       temporal_frames=(1, 2, 4))),
]


def clips(frames: int) -> list[tuple[str, Path, int]]:
    found = [("generated pan (samples/clip.mp4)", ROOT / "samples" / "clip.mp4", min(frames, 24))]
    cockatoo = ROOT.parent / "shared" / "clips" / "cockatoo.mp4"
    if cockatoo.exists():
        found.append(("cockatoo.mp4 (handheld)", cockatoo, frames))
    return found


def run(clip: Path, n: int, style: Path, settings: dict, work: Path) -> list[dict]:
    rows = []
    source = media.open_source(clip, n)
    inputs = list(source.frames(media.fit_size(source.size, settings["size"])))
    for label, mode in MODES:
        out = work / f"{label.replace(' ', '_')}"
        start = time.perf_counter()
        result = vstyle.stylize(clip, style, out, max_frames=n, **{**settings, **mode})
        seconds = time.perf_counter() - start
        outputs = [media.load_image(p) for p in sorted(out.iterdir())]
        # flow runs measured themselves as they went (the same metric); the others are measured here
        c = result.consistency or metrics.consistency(inputs, outputs)
        long_term = metrics.consistency(inputs, outputs, gap=4)["warping_error"]
        later = result.frames[1:] or result.frames
        its = np.mean([f["iterations"] for f in later])
        style_loss = np.mean([f["parts"]["style"] for f in later])  # the price of steadiness
        rows.append(dict(mode=label, error=c["warping_error"], input=c["input_warping_error"],
                         long_term=long_term,
                         s_per_frame=seconds / n, its=its, style=style_loss))
    none = rows[0]["error"]
    for row in rows:
        row["vs_none"] = row["error"] / none if none else float("nan")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 frames at 64 px")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--style-weight", type=float, default=1e5,
                        help="strong by default: a clearly stylized regime")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.jpg")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.size, args.iterations = 8, 64, 20
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    settings = dict(size=args.size, iterations=args.iterations, first_iterations=2 * args.iterations,
                    style_weight=args.style_weight, weights=args.weights)
    print(f"# temporal consistency: size {args.size}, style weight {args.style_weight:g}, "
          f"<= {args.iterations} iterations a frame, weights {args.weights}, device "
          f"{resolve_device('auto')}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, clip, n in clips(args.frames):
            rows = run(clip, n, args.style, settings, Path(tmp))
            print(f"\n{name}, {n} frames (input's own warping error {rows[0]['input']:.5f})")
            print(f"| {'warm start':<26} | warping error | vs none | vs input | 4 frames apart | s/frame | it/frame | style loss |")
            print(f"|{'-' * 28}|---------------|---------|----------|----------------|---------|----------|------------|")
            for r in rows:
                print(f"| {r['mode']:<26} | {r['error']:13.5f} | {r['vs_none']:7.2f} | "
                      f"{r['error'] / r['input']:8.2f} | {r['long_term']:14.5f} | "
                      f"{r['s_per_frame']:7.2f} | {r['its']:8.1f} | {r['style']:10.3g} |")


if __name__ == "__main__":
    main()
