"""Hard cuts: how much of a frame the flow warm start finds unseen in the frame before, within
a shot and across a cut, and what a cut does to a run.

    python bench/cuts.py [--sizes 96,256,512] [--run] [--weights random]

A frame with over video.NEW_SHOT of its pixels unseen (new ground, or a picture changed by over
flow.CHANGED levels) is a new shot, painted afresh as frame 1 is. Printed, per size:

- within shots: every pair of consecutive frames of each clip (the sample pan and GIF, the
  shared cockatoo and Newton's cradle where ../shared is there), the largest and the mean share
  unseen, and how many pairs were taken for a cut (none should be);
- across cuts: pairs of frames (start, middle, end) from two different clips, pairs of flat
  colours (title cards, walls), and jumps within one clip (cockatoo's frames 100 apart): the
  smallest and the median share, and how many were told.

With --run, a clip with three cuts (6 frames of the pan, 6 of cockatoo or the GIF, two flat
red frames, two flat green) and a flash (the pan's 4th frame brightened) is stylized at 96 px
as now and, side by side, with cuts never told (the warm start alone, as before) and with
flashes never told (the frame after one painted afresh too): per cut frame its iterations
and the share of its changed pixels whose painting stayed as it was (held to the last
shot's painting); after the flash, how far the painting moved from the frame before it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402

import vstyle  # noqa: E402
from vstyle import media, metrics, video  # noqa: E402
from vstyle.flow import FlowEstimator  # noqa: E402

SHARED = ROOT.parent / "shared" / "clips"
CLIPS = [ROOT / "samples" / "clip.mp4", ROOT / "samples" / "example.gif",
         SHARED / "cockatoo.mp4", SHARED / "newtonscradle.gif"]
FLAT = [(200, 30, 30), (30, 200, 30), (20, 20, 20), (240, 240, 240), (60, 60, 160)]


def load(path: Path, size: tuple[int, int]) -> list[np.ndarray]:
    return list(media.open_source(path).frames(size))


def shares(pairs, estimator: FlowEstimator) -> list[float]:
    return [estimator.warp(a, b, carry=True).unseen for a, b in pairs]


def row(label: str, values: list[float], cuts: bool) -> str:
    told = sum(v > video.NEW_SHOT for v in values)
    figure = f"min {min(values):.3f} | median {np.median(values):.3f}" if cuts else \
        f"max {max(values):.3f} | mean {np.mean(values):.3f}"
    return f"| {label:<34} | {len(values):5d} | {figure} | {told:5d} |"


def measure(size: tuple[int, int]) -> None:
    estimator = FlowEstimator("dis")
    clips = {p.name: load(p, size) for p in CLIPS if p.exists()}
    print(f"\n{size[0]}x{size[1]}, a new shot above {video.NEW_SHOT}")
    print(f"| {'pairs':<34} | count | share unseen | | told |")
    print(f"|{'-' * 36}|-------|---|---|------|")
    for name, frames in clips.items():
        print(row(f"within {name}", shares(zip(frames, frames[1:]), estimator), False))
    picks = {name: [f[0], f[len(f) // 2], f[-1]] for name, f in clips.items()}
    across = [(a, b) for x in picks for y in picks if x != y for a in picks[x] for b in picks[y]]
    print(row("cuts between clips", shares(across, estimator), True))
    flat = [np.full((size[1], size[0], 3), c, np.uint8) for c in FLAT]
    print(row("cuts between flat colours", shares(
        [(a, b) for i, a in enumerate(flat) for j, b in enumerate(flat) if i != j], estimator), True))
    if "cockatoo.mp4" in clips:
        frames = clips["cockatoo.mp4"]
        print(row("jumps within cockatoo (100 frames)", shares(
            zip(frames[::20], frames[100::20]), estimator), True))


def held(before: np.ndarray, after: np.ndarray, was: np.ndarray, now: np.ndarray) -> float:
    """Of the pixels whose input changed by over 48 levels across a cut, the share whose
    painting changed by under 8: held to the last shot's painting (largest channel's change)."""
    def change(a, b):
        return np.abs(a.astype(int) - b.astype(int)).max(axis=2)
    changed = change(was, now) > 48
    return float((changed & (change(before, after) < 8)).sum() / max(1, changed.sum()))


def run(weights: str) -> None:
    size = (96, 54)
    pan = load(CLIPS[0], size)[:6]
    pan[3] = np.clip(pan[3] * 1.6 + 50, 0, 255).astype(np.uint8)  # a flash
    other = SHARED / "cockatoo.mp4"
    second = load(other if other.exists() else CLIPS[1], size)[:6]
    red, green = (np.full_like(pan[0], c) for c in FLAT[:2])
    frames = pan + second + [red, red, green, green]
    cuts = [6, 12, 14]  # 0-based
    print(f"\nA clip with three cuts (pan | {(other if other.exists() else CLIPS[1]).name} | "
          "red | green) and a flash (the pan's frame 4), 96 px, default settings")
    runs = {"now": {}, "cuts never told": {"NEW_SHOT": 2.0}, "flashes never told": {"FLASH": 0}}
    cut_rows, flash_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        for i, frame in enumerate(frames):
            iio.imwrite(folder / f"{i:03d}.png", frame)
        for k, (label, patches) in enumerate(runs.items()):
            out = Path(tmp) / f"run{k}"
            with mock.patch.multiple(video, **patches) if patches else nullcontext():
                result = vstyle.stylize(folder, ROOT / "samples" / "style.jpg", out, size=96,
                                        weights=weights)
            painted = [media.load_image(p) for p in media.written_frames(out)]
            for t in cuts:
                f = result.frames[t]
                share = held(painted[t - 1], painted[t], frames[t - 1], frames[t])
                cut_rows.append(f"| {label} | {t + 1}{' (new shot)' * f['new_shot']} | "
                                f"{f['iterations']} | {share:.1%} |")
            # the frame after the flash against the one before it, along the flow between them
            past = FlowEstimator("dis").warp(frames[2], frames[4])
            shots = "".join("s" if f["new_shot"] else "-" for f in result.frames[2:5])
            flash_rows.append(f"| {label} | {shots} | {result.frames[4]['iterations']} | "
                              f"{metrics.pair_error(past, painted[2], painted[4]):.5f} | "
                              f"{metrics.pair_error(past, frames[2], frames[4]):.5f} |")
    print("| run | cut before frame | iterations | held to the last shot |\n|---|---|---|---|")
    print("\n".join(cut_rows))
    print("\n| run | frames 3-5 (s: new shot) | frame 5's iterations | frame 3 to 5: painting's"
          " warping error | input's |\n|---|---|---|---|---|")
    print("\n".join(flash_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="96,256,512", help="long sides, comma-separated")
    parser.add_argument("--run", action="store_true", help="also stylize a clip with cuts")
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    for long in (int(s) for s in args.sizes.split(",")):
        measure((long, round(long * 9 / 16)))
    if args.run:
        run(args.weights)


if __name__ == "__main__":
    main()
