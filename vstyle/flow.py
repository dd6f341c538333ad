"""Optical flow between input frames, warping along it, and where the warp can be trusted."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import cv2
import numpy as np


@dataclass
class Warp:
    """How to carry frame t-1 into frame t: for each pixel of t, where it was in t-1."""
    map_x: np.ndarray  # (H, W) float32 source x in frame t-1
    map_y: np.ndarray
    reliable: np.ndarray  # (H, W) float32, 1 where the forward-backward check passes
    filled: np.ndarray  # (H, W) float32, 1 where frame t-1 holds the pixel (not disoccluded)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Warp an (H, W, C) image of frame t-1 into frame t, bilinear (the metric's warp)."""
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def carry(self, image: np.ndarray) -> np.ndarray:
        """Warp a stylized uint8 result into frame t, bicubic: bilinear sampling at fractional
        shifts blurs, and carried from frame to frame the painting's strokes would wash out
        (measured: bicubic started warm frames closer to their optimum, fewer iterations)."""
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REPLICATE)


class FlowEstimator:
    """Dense optical flow with OpenCV: DIS (fast, good) or Farneback (classic)."""

    def __init__(self, method: str = "dis"):
        self.method = method
        if method == "dis":
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Flow from grey uint8 `src` to `dst`: (H, W, 2), src(x) ~ dst(x + flow(x))."""
        if self.method == "dis":
            return self._dis.calc(src, dst, None)
        return cv2.calcOpticalFlowFarneback(src, dst, None, 0.5, 4, 15, 3, 5, 1.1, 0)

    def warp(self, prev: np.ndarray, cur: np.ndarray, fill: bool = False) -> Warp:
        """The warp from RGB frame `prev` (t-1) to `cur` (t), with its reliability mask; with
        `fill`, `filled` also looks at the pictures (only the warm start's own warp uses it)."""
        g_prev, g_cur = grey(prev), grey(cur)
        backward = self(g_cur, g_prev)  # t -> t-1: where each pixel of t came from
        forward = self(g_prev, g_cur)  # t-1 -> t
        return make_warp(backward, forward, prev if fill else None, cur if fill else None)


@contextmanager
def beside_optimizer(device_type: str) -> Iterator[None]:
    """OpenCV threads while the flow (and the saved frames' metric) run beside the optimizer.

    On the CPU the optimizer already keeps every core busy, and OpenCV's own thread pool next
    to it only contends: one thread there (measured on 2 cores: warm frames 7-14 % faster, the
    same flows). On a GPU the cores are free, and the flows need them at large sizes. The
    setting is OpenCV's, process-wide: batches run their jobs in processes, not threads."""
    if device_type != "cpu":
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


@lru_cache(maxsize=4)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of an h x w frame (read only)."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


# How far (levels 0-255, the largest channel's difference, averaged over 3x3) frame t-1 carried
# along the flow may miss frame t and still show the same picture: a camera's noise.
SAME_PICTURE = 6.0


def make_warp(backward: np.ndarray, forward: np.ndarray, prev: np.ndarray | None = None,
              cur: np.ndarray | None = None) -> Warp:
    """Sampling maps from the backward flow, and Ruder et al.'s reliability mask.

    A pixel is unreliable where the backward flow w and the forward flow w^ at the point it
    lands on do not cancel (|w + w^|^2 > 0.01 (|w|^2 + |w^|^2) + 0.5: occluded or badly
    matched), at motion boundaries (|grad w^|^2 > 0.01 |w^|^2 + 0.002), and where it comes from
    outside the previous frame. `filled` leaves out only the first and the last: at a motion
    boundary the carried picture is still the best starting point, just not a firm target.
    Given the RGB frames, `filled` also keeps the pixels the two flows disagree on where frame
    t-1 carried along the flow still shows frame t's picture: in a flat sky or wall any small
    motion fits, DIS's two guesses differ, and the pixels are not new ground.
    """
    # Per channel and with OpenCV where it can: this runs for every frame, beside the optimizer
    # (4x faster than whole-array numpy at 512 px, the same masks).
    h, w = backward.shape[:2]
    xs, ys = _grid(h, w)
    bx, by = cv2.split(backward)
    map_x, map_y = xs + bx, ys + by
    fwd_at = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fx, fy = cv2.split(fwd_at)
    sx, sy = bx + fx, by + fy
    fwd2 = fx * fx + fy * fy
    occluded = sx * sx + sy * sy > 0.01 * (bx * bx + by * by + fwd2) + 0.5
    gx = cv2.Sobel(fwd_at, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)  # central differences
    gy = cv2.Sobel(fwd_at, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
    grad2 = gx * gx + gy * gy
    boundary = grad2[..., 0] + grad2[..., 1] > 0.01 * fwd2 + 0.002
    # a pixel spans half a pixel either side of its centre: a source within that of the edge
    # is the edge pixel itself (DIS finds hundredths of a pixel on a still shot's noise, and
    # counted as new ground the frame's border ring was repainted every frame)
    outside = (map_x < -0.5) | (map_x > w - 0.5) | (map_y < -0.5) | (map_y > h - 0.5)
    reliable = ~(occluded | outside | boundary)  # the mask, and the metric's
    if prev is not None:
        carried = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        miss = cv2.blur(cv2.absdiff(carried, cur).max(axis=2).astype(np.float32), (3, 3))
        occluded &= miss > SAME_PICTURE
    filled = ~(occluded | outside)
    return Warp(map_x, map_y, reliable.astype(np.float32), filled.astype(np.float32))
