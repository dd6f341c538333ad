"""Shared fixtures: tiny synthetic clips made on the fly, random VGG19 weights, ../shared paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

# Tests never download weights: a seeded random VGG19 keeps the mechanics real.
os.environ["VSTYLE_WEIGHTS"] = "random"

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_file(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared holds the real clips)")
    return path


def scene(t: int, w: int = 64, h: int = 48) -> np.ndarray:
    """Hills and sky panning right by 2 px a frame, and a red square moving down."""
    W = w + 64
    ys, xs = np.mgrid[0:h, 0:W].astype(np.float32)
    image = np.zeros((h, W, 3), np.float32)
    image[..., 0], image[..., 1], image[..., 2] = 90 + 60 * ys / h, 140 + 40 * ys / h, 230 - 50 * ys / h
    hills = h * (0.55 + 0.12 * np.sin(xs / 9.0) + 0.06 * np.sin(xs / 3.1))
    image[ys > hills] = (60, 150, 70)
    image[(ys > hills) & ((xs.astype(int) // 6 + ys.astype(int) // 6) % 2 == 0)] = (90, 120, 50)
    cv2.circle(image, (W - 30, 10), 6, (250, 220, 90), -1)
    frame = np.ascontiguousarray(image[:, 2 * t:2 * t + w].astype(np.uint8))
    y = 4 + 3 * t
    frame[y:y + 12, 24:36] = (230, 40, 40)
    return frame


def frames(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    return [scene(t, w, h) for t in range(n)]


def write_mp4(path: Path, images: list[np.ndarray], fps: float = 12.0) -> Path:
    h, w = images[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1,
                                         quality=None, output_params=["-crf", "12"])
    writer.send(None)
    for image in images:
        writer.send(np.ascontiguousarray(image))
    writer.close()
    return path


def write_gif(path: Path, images: list[np.ndarray], durations_ms: list[int], loop: int = 0) -> Path:
    iio.imwrite(path, np.stack(images), duration=durations_ms, loop=loop, plugin="pillow")
    return path


def with_audio(video, path):
    """Mux a sine tone (a little shorter than the video, as real tracks often are) into it."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(video),
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=0.9", "-c:v", "copy",
                    "-c:a", "aac", str(path)], check=True)
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    """8 frames, 64x48, 12 fps."""
    return write_mp4(tmp_path / "clip.mp4", frames(8))


@pytest.fixture
def style(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    image = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (64, 64),
                       interpolation=cv2.INTER_NEAREST)
    path = tmp_path / "style.png"
    iio.imwrite(path, image)
    return path


def run_cli(*args, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run the `vstyle` command as a user would; returns the CompletedProcess."""
    full_env = {**os.environ, "VSTYLE_WEIGHTS": "random", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


FAST = ["--size", "32", "--iterations", "3", "--first-iterations", "4", "--quiet"]


def pytest_collection_modifyitems(config, items):
    """Soak tests (marked slow) run only with VSTYLE_SLOW=1."""
    if os.environ.get("VSTYLE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow soak test: run with VSTYLE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
