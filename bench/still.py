"""A still shot: a tripod, a screen recording, a talking head's background. Nothing moves, only
the sensor's noise changes from frame to frame, and the painting should stay put.

    python bench/still.py [--frames 40] [--size 64] [--iterations 30] [--weights random]
                          [--subject]

The clip is the samples' generated landscape, unmoving, with Gaussian noise (sigma 2 levels)
drawn afresh for every frame, as a camera's sensor adds it: no two frames are equal, so none
is copied as a repeat. With --subject the samples' red ball bounces across it (the person in
front of a still background), and the background alone is measured: the pixels the ball
does not come near in either frame. Printed per warm start: how much the painting changes
from one frame to the next (mean absolute difference in levels 0-255, over the second half of
the clip, where every mode has settled; the input's own change, after the resize, is the
floor), how far the last frame has moved from the first, and the iterations and seconds a frame.
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import vstyle  # noqa: E402
from samples.make_samples import FRAME_W, N_FRAMES, draw_ball, render_scene  # noqa: E402
from vstyle import media  # noqa: E402

MODES = ["none", "previous", "flow"]


def clean_frames(n: int, subject: bool) -> list[np.ndarray]:
    """The unmoving scene, n times, with the ball bouncing across it over the n frames."""
    scene = np.ascontiguousarray(render_scene(np.random.default_rng(1))[:, 40:40 + FRAME_W])
    frames = []
    for i in range(n):
        frame = scene.copy()
        if subject:
            draw_ball(frame, i * (N_FRAMES - 1) / max(1, n - 1))
        frames.append(frame)
    return frames


def still_clip(folder: Path, clean: list[np.ndarray]) -> Path:
    """The frames with fresh sensor noise each, as PNGs (lossless: the noise is what differs)."""
    noise = np.random.default_rng(2)
    folder.mkdir()
    for i, frame in enumerate(clean):
        noisy = np.clip(frame + noise.normal(0, 2.0, frame.shape) + 0.5, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:04d}.png"), noisy[..., ::-1])
    return folder


def background(clean: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Per frame t, the pixels that the ball (or its shadow) comes within 3 px of in neither
    frame t-1 nor t, at the processing size (all pixels on a plain still shot)."""
    still = clean[0]
    masks = [np.ones(size[::-1], bool)]
    for prev, cur in zip(clean, clean[1:]):
        touched = ((prev != still) | (cur != still)).any(axis=2).astype(np.uint8)
        touched = cv2.resize(touched, size, interpolation=cv2.INTER_AREA) > 0
        near = cv2.dilate(touched.astype(np.uint8), np.ones((7, 7), np.uint8))
        masks.append(near == 0)
    return masks


def changes(images: list[np.ndarray], keep: list[np.ndarray]) -> tuple[float, float]:
    """Mean absolute change a frame over the second half, and from the first frame to the last,
    over the `keep` pixels (first to last: those kept in every frame)."""
    f = [image.astype(np.float32) for image in images]
    half = len(f) // 2
    per_frame = np.mean([np.abs(f[t] - f[t - 1])[keep[t]].mean() for t in range(half, len(f))])
    always = np.logical_and.reduce(keep[1:]) if len(keep) > 1 else keep[0]
    return float(per_frame), float(np.abs(f[-1] - f[0])[always].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--style-weight", type=float, default=1e5)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "style.jpg")
    parser.add_argument("--modes", default=",".join(MODES), help="warm starts, comma-separated")
    parser.add_argument("--subject", action="store_true",
                        help="a ball bounces across the still scene; the background is measured")
    args = parser.parse_args()
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    settings = dict(size=args.size, iterations=args.iterations,
                    first_iterations=2 * args.iterations, style_weight=args.style_weight,
                    weights=args.weights)
    what = "with a ball bouncing across (background only)" if args.subject else "with sensor noise"
    print(f"# a still shot {what}: {args.frames} frames, size {args.size}, style "
          f"weight {args.style_weight:g}, <= {args.iterations} iterations a frame, weights "
          f"{args.weights}")
    with tempfile.TemporaryDirectory() as tmp:
        clean = clean_frames(args.frames, args.subject)
        clip = still_clip(Path(tmp) / "still", clean)
        source = media.open_source(clip)
        size = media.fit_size(source.size, args.size)
        keep = background(clean, size)
        floor, _ = changes(list(source.frames(size)), keep)
        print(f"\n| warm start | change a frame | first to last | it/frame | s/frame |")
        print(f"|---|---|---|---|---|")
        print(f"| (the input) | {floor:.2f} | | | |")
        for mode in args.modes.split(","):
            out = Path(tmp) / mode
            start = time.perf_counter()
            result = vstyle.stylize(clip, args.style, out, warm_start=mode, **settings)
            seconds = (time.perf_counter() - start) / args.frames
            per_frame, drift = changes([media.load_image(p) for p in media.written_frames(out)],
                                       keep)
            its = np.mean([f["iterations"] for f in result.frames[1:]])
            print(f"| {mode} | {per_frame:.2f} | {drift:.2f} | {its:.1f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
