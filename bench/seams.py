"""Chunk seams: the warping error across chunk joins versus inside chunks.

    python bench/seams.py [--quick] [--frames 40] [--chunk 10] [--size 96]

Runs the chunks exactly as `vstyle batch --chunk-frames` does (each starts vstyle.batch.OVERLAP
frames early and fades in over them) into PNG frames, then measures every frame pair with
vstyle.metrics: the pairs in a join's fade against the others. Goal: joins within 1.5x of the rest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import vstyle  # noqa: E402
from vstyle import batch, media, metrics  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 frames at 64 px, chunks of 10")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--weights", default="random")
    args = p.parse_args()
    if args.quick:
        args.frames, args.chunk, args.size, args.iterations = 20, 10, 64, 20
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    clip = ROOT.parent / "shared" / "clips" / "cockatoo.mp4"
    if not clip.exists():
        clip = ROOT / "samples" / "clip.mp4"
    n = min(args.frames, media.open_source(clip).n_frames)
    options = vstyle.Options(size=args.size, iterations=args.iterations,
                             first_iterations=2 * args.iterations, weights=args.weights,
                             style_weight=1e5)
    style = ROOT / "samples" / "style.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        jobs = batch.chunk_jobs(clip, Path(tmp) / "out.mp4", n, args.chunk)
        for job in jobs:
            vstyle.stylize(clip, style, job.output, options, frame_range=job.frame_range)
        results = list(batch.joined_frames(jobs))  # as `vstyle batch` joins them
        size = media.fit_size(media.open_source(clip).size, args.size)
        errors, _ = metrics.warping_errors(media.open_source(clip, n).frames(size), results)
    # pairs (t-1, t) whose frame t lies in a fade: from the chunk's first frame to its first
    # frame of its own
    joins = {t for j in jobs[1:] for t in range(j.frame_range[0], j.frame_range[0] + j.keep_from + 1)}
    at_join = [e for i, e in enumerate(errors, start=1) if i in joins]
    inside = [e for i, e in enumerate(errors, start=1) if i not in joins]
    print(f"# chunk seams: {clip.name}, {n} frames at {size[0]}x{size[1]}, chunks of {args.chunk} "
          f"(+{batch.OVERLAP} overlap), weights {args.weights}")
    print("| pairs | count | mean warping error |")
    print("|---|---|---|")
    print(f"| across a join (the fades) | {len(at_join)} | {np.mean(at_join):.5f} |")
    print(f"| inside chunks | {len(inside)} | {np.mean(inside):.5f} |")
    print(f"\nseam ratio (join / inside): {np.mean(at_join) / np.mean(inside):.2f}")


if __name__ == "__main__":
    main()
