"""Where a warm frame's iterations go: the generated pan, whose motion is known, stylized with
`previous` and with flow warm starts that take the exact motion or DIS's estimate, with and
without the new pixels' own style term, and with that term's Grams read from the whole frame
(how it ran before they read only the new pixels' positions: the same loss, more work).

    python bench/warm_cost.py [--frames 12] [--size 128] [--weights random]

At --size 128 the pan moves exactly 6 px a frame, so the exact rows carry the painting by
whole pixels (no resampling) and isolate what painting the entering strip costs; DIS's
estimate is off by a fraction of a pixel, and the carried painting is resampled. A second
table moves one painted frame by whole pixels and measures its style loss: the painting is
tuned to VGG19's pooling grid, which a move of a pixel or two breaks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "samples"))

import vstyle  # noqa: E402
from make_samples import PAN_STEP  # noqa: E402  (px a frame at the clip's own width)
from temporal import style_loss  # noqa: E402
from vstyle import flow, media, metrics, video  # noqa: E402
from vstyle.optimize import Stylizer  # noqa: E402
from vstyle.options import Options  # noqa: E402

CLIP, STYLE = ROOT / "samples" / "clip.mp4", ROOT / "samples" / "style.jpg"
ROWS = [  # (label, warm start, exact motion, new pixels' term: "own" | "none" | "dense")
    ("previous", "previous", False, "own"),
    ("flow, exact motion, no new-pixel term", "flow", True, "none"),
    ("flow, exact motion", "flow", True, "own"),
    ("flow, DIS, no new-pixel term", "flow", False, "none"),
    ("default (flow, DIS)", "flow", False, "own"),
    ("default, new-pixel Grams over the frame", "flow", False, "dense"),
]


def known_pan(step: float):
    """A FlowEstimator.__call__ that returns the pan's own motion: the scene moves `step` px
    left a frame (the red ball, ~2 % of the frame, moves otherwise and gets it wrong)."""
    shift = max(1, round(step))

    def call(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        s, d = src.astype(np.float32), dst.astype(np.float32)
        forward = np.abs(d[:, :-shift] - s[:, shift:]).mean() < \
            np.abs(d[:, shift:] - s[:, :-shift]).mean()  # src -> dst runs with the pan
        out = np.zeros((*src.shape, 2), np.float32)
        out[..., 0] = -step if forward else step
        return out
    return call


def frame_size(size: int) -> tuple[int, int]:
    return media.fit_size(media.open_source(CLIP).size, size)


def frames(n: int, size: int) -> list[np.ndarray]:
    return list(media.open_source(CLIP, n).frames(frame_size(size)))


def term_patch(term: str):
    """The new pixels' style term as the row has it."""
    if term == "none":
        return mock.patch.object(video, "fresh_mask", lambda *a: None)
    if term == "dense":
        dense = Stylizer.fresh_region
        return mock.patch.object(Stylizer, "fresh_region",
                                 lambda self, mask, gather=False: dense(self, mask))
    return nullcontext()


def warm_rows(settings: dict, n: int, step: float) -> list[dict]:
    rows = []
    for label, warm, exact, term in ROWS:
        with tempfile.TemporaryDirectory() as tmp, \
                (mock.patch.object(flow.FlowEstimator, "__call__", known_pan(step))
                 if exact else nullcontext()), term_patch(term):
            out = Path(tmp) / "out"  # a folder of PNGs: measured before any encoding
            result = vstyle.stylize(CLIP, STYLE, out, max_frames=n, warm_start=warm, **settings)
            consistency = result.consistency or metrics.consistency(
                frames(n, settings["size"]), [media.load_image(p) for p in media.written_frames(out)])
        warm_frames = result.frames[1:]
        rows.append(dict(label=label, its=np.mean([f["iterations"] for f in warm_frames]),
                         seconds=np.mean([f["seconds"] for f in warm_frames]),
                         per_it=sum(f["seconds"] for f in warm_frames)
                         / sum(f["iterations"] for f in warm_frames),
                         style=np.mean([f["parts"]["style"] for f in warm_frames]),
                         error=consistency["warping_error"]))
    return rows


def shift_rows(settings: dict, shifts=(0, 1, 2, 3, 4)) -> list[tuple[str, list[float]]]:
    """Style loss of one painted frame moved by whole pixels, over the unmoved one's (both
    cropped to the same window, so only the painting's place on VGG19's grid changes)."""
    content = frames(1, settings["size"])[0]
    rows = []
    for pooling in ("max", "avg"):
        options = Options(**{**settings, "pooling": pooling})
        painted = vstyle.stylize_image(content, media.load_image(STYLE), options)
        judge = Stylizer([video.fit_style(media.load_image(STYLE), options,
                                          (content.shape[1], content.shape[0]), content)], options)
        m, w = max(shifts), painted.shape[1]
        base = style_loss(judge, painted[:, m:w - m])
        rows.append((pooling, [style_loss(judge, painted[:, m + s:w - m + s]) / base
                               for s in shifts]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--style-weight", type=float, default=1e5)
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    settings = dict(size=args.size, iterations=args.iterations,
                    first_iterations=2 * args.iterations, style_weight=args.style_weight,
                    weights=args.weights)
    size = frame_size(args.size)
    step = PAN_STEP * size[0] / media.open_source(CLIP).size[0]
    print(f"# warm frames on the generated pan: {args.frames} frames at {size[0]}x{size[1]}, "
          f"the scene moves {step:g} px a frame, <= {args.iterations} iterations, style weight "
          f"{args.style_weight:g}, weights {args.weights}")
    rows = warm_rows(settings, args.frames, step)
    base = rows[0]
    print(f"\n| {'warm start':<40} | it/frame | vs previous | optimizer s/frame | ms/iteration | style loss | warping error |")
    print(f"|{'-' * 42}|----------|-------------|-------------------|--------------|------------|---------------|")
    for r in rows:
        print(f"| {r['label']:<40} | {r['its']:8.1f} | {r['its'] / base['its']:10.2f}x | "
              f"{r['seconds']:17.2f} | {1000 * r['per_it']:12.0f} | {r['style']:10.3g} | "
              f"{r['error']:13.5f} |")
    shifts = (0, 1, 2, 3, 4)
    print("\nstyle loss of a painted frame moved by whole pixels, over the unmoved one's")
    print("| pooling | " + " | ".join(f"{s} px" for s in shifts) + " |")
    print("|---------|" + "------|" * len(shifts))
    for pooling, ratios in shift_rows(settings, shifts):
        print(f"| {pooling:<7} | " + " | ".join(f"{r:4.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
