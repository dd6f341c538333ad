"""What one frame pair's optical flow costs on the CPU, beside the optimizer.

    python bench/flow_cost.py [--size 512] [--frames 12] [--threads 0]

Times vstyle's warps on the first frames of each clip (samples/clip.mp4, and
../shared/clips/cockatoo.mp4 where it is here): the metric's (two DIS flows and the
forward-backward mask), and the one that carries the painting (also the camera's motion from
tracked corners and the picture checks), in ms a pair and the frames a second that one warp a
frame allows. --threads sets OpenCV's threads (0: its default, all cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vstyle import media  # noqa: E402
from vstyle.flow import FlowEstimator, camera_motion, grey  # noqa: E402


def per_pair(frames: list, call) -> float:
    """Median ms a pair over the clip's pairs, after one warm-up call."""
    call(frames[0], frames[1])
    times = []
    for prev, cur in zip(frames, frames[1:]):
        start = time.perf_counter()
        call(prev, cur)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    clips = [ROOT / "samples" / "clip.mp4", ROOT.parent / "shared" / "clips" / "cockatoo.mp4"]
    estimator = FlowEstimator("dis")
    print(f"# flow cost: size {args.size}, OpenCV threads {cv2.getNumThreads()}")
    print("\n| clip | metric's warp, ms | painting's warp, ms | of which camera motion, ms "
          "| frames/s at one warp a frame |")
    print("|---|---|---|---|---|")
    for clip in (c for c in clips if c.exists()):
        source = media.open_source(clip, args.frames)
        frames = list(source.frames(media.fit_size(source.size, args.size)))
        plain = per_pair(frames, estimator.warp)
        carry = per_pair(frames, lambda a, b: estimator.warp(a, b, carry=True))
        camera = per_pair(frames, lambda a, b: camera_motion(grey(a), grey(b)))
        print(f"| {clip.name} | {plain:.1f} | {carry:.1f} | {camera:.1f} | {1000 / carry:.0f} |")


if __name__ == "__main__":
    main()
