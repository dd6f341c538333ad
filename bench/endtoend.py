"""End-to-end benchmark: where the wall time of a whole run goes, and warm frames per second.

    python bench/endtoend.py CLIP STYLE [--size 512] [--frames 48] [--set warm_start=previous ...]

Runs `vstyle.stylize` as the CLI does (decode, prefetched flow, optimizer, PNG work folder,
encode) and splits its wall time into: setup (up to frame 1: network, style Grams), frame 1,
and per warm frame the optimizer, the rest of the frame's work in the main thread (warm start,
targets, saving hand-off), the time between frames, and how much of that was waiting for the
prefetch thread (decoding and optical flow); then encoding. "warm frames/s" is the rate of the
frame loop once it runs: 1 / (optimizer + rest + between).
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
from vstyle import video  # noqa: E402
from vstyle.options import Options  # noqa: E402


def timed_prefetch(waits: list[float]):
    """video.prefetch, recording how long the frame loop waits for each prepared frame."""
    original = video.prefetch

    def prefetch(items, depth: int = 2):
        frames = original(items, depth)
        try:
            while True:
                start = time.perf_counter()
                try:
                    item = next(frames)
                except StopIteration:
                    return
                waits.append(time.perf_counter() - start)
                yield item
        finally:
            frames.close()
    return prefetch


def option_value(name: str, text: str):
    """--set values typed like the Options field's default (a tuple: comma-separated)."""
    default = getattr(Options(), name)
    if isinstance(default, bool):
        return text in ("1", "true", "True")
    if isinstance(default, tuple):
        return tuple(type(default[0])(v) for v in text.split(","))
    if default is not None:
        return type(default)(text)
    for kind in (int, float):  # options whose default is None (fps, lr, ...)
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip", type=Path)
    p.add_argument("style", type=Path)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--weights", default="random")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                   help="any other option, e.g. warm_start=previous or cuda_graphs=0")
    args = p.parse_args()
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    extra = {k: option_value(k, v) for k, v in (a.split("=", 1) for a in args.set)}

    marks: list[tuple[float, str, float | None]] = []  # (time, kind, optimizer seconds)
    waits: list[float] = []
    video.prefetch = timed_prefetch(waits)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = vstyle.stylize(
            args.clip, args.style, Path(tmp) / "out.mp4", size=args.size,
            max_frames=args.frames, weights=args.weights, **extra,
            on_event=lambda e: marks.append((time.perf_counter(), e.kind,
                                             e.stats.seconds if e.stats else None)))
        end = time.perf_counter()
    begins = [m for m in marks if m[1] == "frame_start"]
    ends = [m for m in marks if m[1] == "frame"]
    encode = next(m[0] for m in marks if m[1] == "encode")
    optimizer = [e[2] for e in ends]
    rest = [e[0] - b[0] - e[2] for b, e in zip(begins, ends)]
    between = [b[0] - e[0] for e, b in zip(ends, begins[1:])]
    warm = np.mean(optimizer[1:]) + np.mean(rest[1:]) + np.mean(between)
    print(f"# end to end: {result.n_frames} frames of {args.clip.name} at --size {args.size}, "
          f"{' '.join(args.set) or 'defaults'}")
    print(f"total {end - start:.2f} s; setup (to frame 1) {begins[0][0] - start:.2f} s; frame 1 "
          f"optimizer {optimizer[0]:.3f} s + rest {rest[0]:.3f} s; encode {end - encode:.2f} s")
    print(f"warm frame: optimizer {np.mean(optimizer[1:]) * 1e3:.1f} ms "
          f"({np.mean([f['iterations'] for f in result.frames[1:]]):.1f} it), rest "
          f"{np.mean(rest[1:]) * 1e3:.1f} ms, between frames {np.mean(between) * 1e3:.1f} ms "
          f"(waiting for prefetch {np.mean(waits[1:]) * 1e3:.1f} ms); "
          f"warm frames/s {1 / warm:.2f}")


if __name__ == "__main__":
    main()
