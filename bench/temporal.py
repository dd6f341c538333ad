"""Temporal consistency benchmark: warm starts compared on the same clips, style and settings.

    python bench/temporal.py [--quick] [--frames 40] [--size 128] [--weights random] [--rows 2,4]

Prints, per clip, the masked warping error (vstyle.metrics, Lai et al. 2018) of each mode, on
the pan also the same error along the pan's known motion instead of DIS's estimate, its
ratio to `--warm-start none` and to the input's own error (a record only: added texture inflates
it, see FACTS.md), the same error between frames 4 apart (long-term consistency, flow straight
from t-4 to t), the time per frame, and how evenly the frame is stylized: the style loss of
each quarter of the frame (vertical bands) on its own, worst over best, averaged over frames (the
content's own variety keeps it above 1; `none` paints every frame from scratch; on the pan new
ground enters at the right every frame), and whether the style fades as the clip goes on: the
style loss of the last third of the warm frames over that of the first third (a budget too small
to finish new ground leaves it half painted, and the temporal loss then holds it so). Frames are
measured before any lossy encoding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vstyle  # noqa: E402
from samples.make_samples import PAN_STEP  # noqa: E402
from vstyle import losses, media, metrics, video  # noqa: E402
from vstyle.flow import SAME_PICTURE, Warp, picture_miss  # noqa: E402
from vstyle.optimize import Stylizer, to_tensor  # noqa: E402
from vstyle.options import Options  # noqa: E402
from vstyle.vgg import resolve_device  # noqa: E402

MODES = [  # (label, options)
    ("none", dict(warm_start="none", temporal_weight=0.0)),
    ("previous", dict(warm_start="previous", temporal_weight=0.0)),
    ("flow", dict(warm_start="flow", temporal_weight=0.0)),
    ("flow + temporal loss 10", dict(warm_start="flow", temporal_weight=10.0)),
    ("flow + temporal loss 100", dict(warm_start="flow", temporal_weight=100.0)),
    # previous' budget: it stops after ~10 iterations (its loss flattens at once, smeared)
    ("default, <= 10 iterations", dict(warm_start="flow", temporal_weight=10.0, iterations=10)),
    # the stop rule's dial: stop sooner where the loss falls slowly (a cap stops regardless)
    ("default, --tol 0.05", dict(warm_start="flow", temporal_weight=10.0, tol=0.05)),
    ("default + long-term 1,2,4", dict(warm_start="flow", temporal_weight=10.0,
                                       temporal_frames=(1, 2, 4))),
    # without the new pixels' own style term (see Stylizer.perceptual)
    ("default, no new-region Gram", dict(warm_start="flow", temporal_weight=10.0,
                                         _no_fresh=True)),
]
BANDS = 4
PAN = ROOT / "samples" / "clip.mp4"


@torch.no_grad()
def style_loss(stylizer: Stylizer, image: np.ndarray) -> float:
    """An RGB image's style loss against the stylizer's targets, summed over the style layers."""
    feats = stylizer.features(to_tensor(np.ascontiguousarray(image), stylizer.device))
    return sum(float(losses.style_layer_loss(feats[l], stylizer.style_grams[l]))
               for l in stylizer.options.style_layers)


def band_spread(stylizer: Stylizer, frames: list[np.ndarray]) -> float:
    """Worst over best style loss of the frame's vertical bands, averaged over frames."""
    spreads = []
    for frame in frames:
        w = frame.shape[1]
        band_losses = [style_loss(stylizer, frame[:, b * w // BANDS:(b + 1) * w // BANDS])
                       for b in range(BANDS)]
        spreads.append(max(band_losses) / min(band_losses))
    return float(np.mean(spreads))


def clips(frames: int) -> list[tuple[str, Path, int]]:
    found = [("generated pan (samples/clip.mp4)", PAN, min(frames, 24))]
    cockatoo = ROOT.parent / "shared" / "clips" / "cockatoo.mp4"
    if cockatoo.exists():
        found.append(("cockatoo.mp4 (handheld)", cockatoo, frames))
    return found


def true_motion_error(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """The pan's warping error along its known motion (PAN_STEP px a frame at 256 px wide)
    instead of DIS's estimate, on the pixels whose input follows that motion (not the ball,
    not the entering strip): how steady the painting is on the scene itself, free of the
    estimate's own error (tenths of a pixel, which a textured painting turns into error)."""
    h, w = inputs[0].shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = xs + PAN_STEP * w / 256  # the scene moves left: pixel x of t was at x + step
    errors = []
    for t in range(1, len(inputs)):
        follows = picture_miss(inputs[t - 1], inputs[t], map_x, ys) <= SAME_PICTURE
        mask = (follows & (map_x <= w - 1)).astype(np.float32)
        errors.append(metrics.pair_error(Warp(map_x, ys, mask, mask), outputs[t - 1], outputs[t]))
    return float(np.mean(errors))


def run(clip: Path, n: int, style: Path, settings: dict, work: Path,
        modes: list[tuple[str, dict]]) -> list[dict]:
    rows = []
    source = media.open_source(clip, n)
    size = media.fit_size(source.size, settings["size"])
    inputs = list(source.frames(size))
    judge_options = Options(weights=settings["weights"])
    judge = Stylizer([video.fit_style(media.load_image(style), judge_options, size, inputs[0])],
                     judge_options)
    for k, (label, mode) in enumerate(modes):
        out = work / f"mode{k}"  # a folder: no dots (labels have some)
        mode = dict(mode)
        plain = mode.pop("_no_fresh", False)
        start = time.perf_counter()
        with mock.patch.object(video, "fresh_mask", lambda *a: None) if plain else nullcontext():
            result = vstyle.stylize(clip, style, out, max_frames=n, **{**settings, **mode})
        seconds = time.perf_counter() - start
        outputs = [media.load_image(p) for p in media.written_frames(out)]
        # flow runs measured themselves as they went (the same metric); the others are measured here
        c = result.consistency or metrics.consistency(inputs, outputs)
        long_term = metrics.consistency(inputs, outputs, gap=4)["warping_error"]
        later = result.frames[1:] or result.frames
        its = np.mean([f["iterations"] for f in later])
        styles = [f["parts"]["style"] for f in later]
        style_loss = np.mean(styles)  # the price of steadiness
        third = max(1, len(styles) // 3)
        drift = np.mean(styles[-third:]) / np.mean(styles[:third])
        true = true_motion_error(inputs, outputs) if clip == PAN else None
        rows.append(dict(mode=label, error=c["warping_error"], input=c["input_warping_error"],
                         true=true,
                         long_term=long_term, bands=band_spread(judge, outputs[1:]),
                         s_per_frame=seconds / n, its=its, style=style_loss, drift=drift))
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
    parser.add_argument("--rows", help="only these rows of the table, by number (e.g. 2,4; "
                        "row 1, none, always runs: the other rows are measured against it)")
    args = parser.parse_args()
    modes = MODES
    if args.rows:  # e.g. after a change to one warm start
        wanted = {1} | {int(k) for k in args.rows.split(",")}
        if not wanted <= set(range(1, len(MODES) + 1)):
            parser.error(f"--rows: numbers from 1 to {len(MODES)}")
        modes = [m for k, m in enumerate(MODES, 1) if k in wanted]
    if args.frames < 6:
        parser.error("--frames: at least 6 (the error 4 frames apart needs pairs that far apart)")
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
            rows = run(clip, n, args.style, settings, Path(tmp), modes)
            print(f"\n{name}, {n} frames (input's own warping error {rows[0]['input']:.5f})")
            print(f"| {'warm start':<27} | warping error | along true motion | vs none | vs input | 4 frames apart | s/frame | it/frame | style loss | band spread | style drift |")
            print(f"|{'-' * 29}|---------------|-------------------|---------|----------|----------------|---------|----------|------------|-------------|-------------|")
            for r in rows:
                true = "—" if r["true"] is None else f"{r['true']:.5f}"
                print(f"| {r['mode']:<27} | {r['error']:13.5f} | {true:>17} | {r['vs_none']:7.2f} | "
                      f"{r['error'] / r['input']:8.2f} | {r['long_term']:14.5f} | "
                      f"{r['s_per_frame']:7.2f} | {r['its']:8.1f} | {r['style']:10.3g} | "
                      f"{r['bands']:11.2f} | {r['drift']:11.2f} |")


if __name__ == "__main__":
    main()
