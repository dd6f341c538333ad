"""Output formats compared: size and faithfulness of GIF, animated WebP and MP4 on the same frames.

    python bench/formats.py [--frames 24] [--size 256] [--long 1500]

Encodes the first frames of each clip (samples/clip.mp4, and ../shared/clips/cockatoo.mp4 where
it is here) with vstyle's own writers, decodes them again and prints a table: the file's size
and its PSNR against the frames it was given (higher is closer). The frames are the input's
own: a random VGG19 paints noise-like texture that says little about real paintings.

--long N adds a second table: a WebP of N frames at 512 px (the first clip's frames, cycled),
streamed through ffmpeg's libwebp and encoded in memory by Pillow (vstyle's way where ffmpeg has
no libwebp), each in a process of its own: its time and peak memory (Unix).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vstyle import media  # noqa: E402

FORMATS = [  # (label, output name, write_output keyword arguments)
    ("GIF, bayer dither (default)", "out.gif", dict(gif_dither="bayer")),
    ("GIF, no dither", "out.gif", dict(gif_dither="none")),
    (f"WebP, quality {media.WEBP_QUALITY}", "out.webp", {}),
    ("WebP, in memory (Pillow: an ffmpeg without libwebp)", "memory.webp", {}),
    ("MP4, crf 18 (default)", "out.mp4", dict(crf=18)),
]


def decode(path: Path, fps: float) -> np.ndarray:
    """The frames as shown at `fps`: libwebp stores a repeated frame once, longer."""
    return np.stack(list(media.open_source(path, fps=fps if path.suffix == ".webp" else None)
                         .frames()))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--long", type=int, default=0, metavar="N")
    parser.add_argument("--encode", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.encode:
        return encode(args.encode[0], int(args.encode[1]), args.encode[2])
    clips = [ROOT / "samples" / "clip.mp4", ROOT.parent / "shared" / "clips" / "cockatoo.mp4"]
    print(f"# output formats: first {args.frames} frames at {args.size} px")
    print("| clip | format | KB | vs GIF | PSNR dB |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in (c for c in clips if c.exists()):
            source = media.open_source(clip, args.frames)
            frames = list(source.frames(media.fit_size(source.size, args.size)))
            gif_kb = None
            for label, name, extra in FORMATS:
                out = Path(tmp) / name
                media._ffmpeg_writes_webp = lambda: name != "memory.webp"
                media.write_output(frames, out, media.output_kind(out), source.timing, **extra)
                kb = out.stat().st_size / 1024
                gif_kb = gif_kb or kb
                back = decode(out, source.timing.fps)
                # H.264 needs even sides: compare what both have
                h, w = min(back.shape[1], frames[0].shape[0]), min(back.shape[2], frames[0].shape[1])
                quality = psnr(back[:, :h, :w], np.stack(frames)[:, :h, :w])
                print(f"| {clip.name} | {label} | {kb:.0f} | {kb / gif_kb:.2f} | {quality:.1f} |")
    if args.long:
        print(f"\n# a long WebP: {args.long} frames at 512 px")
        print("| encoder | s | peak memory, MB (the process: Python and its frames) |")
        print("|---|---|---|")
        for how in ("streamed", "in memory"):
            done = subprocess.run([sys.executable, __file__, "--encode", how, str(args.long),
                                   clips[0]], capture_output=True, text=True, check=True)
            seconds, peak = done.stdout.split()
            print(f"| {how} | {float(seconds):.1f} | {float(peak):.0f} |")


def encode(how: str, n: int, clip: str) -> None:
    """--long's child: write n frames of clip, cycled, as a WebP; print its seconds and peak MB."""
    import resource
    media._ffmpeg_writes_webp = lambda: how == "streamed"
    source = media.open_source(clip, 60)
    frames = list(source.frames(media.fit_size(source.size, 512)))
    cycled = lambda: (frames[i % len(frames)].copy() for i in range(n))  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        media.write_output(cycled, Path(tmp) / "long.webp", "webp", media.Timing(25.0, None))
        print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
