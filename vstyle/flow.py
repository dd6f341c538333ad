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
    map_x: np.ndarray  # (H, W) float32 source x in frame t-1, along DIS's flow
    map_y: np.ndarray
    reliable: np.ndarray  # (H, W) float32, 1 where the forward-backward check passes
    filled: np.ndarray  # (H, W) float32, 1 where frame t-1 holds the pixel (not disoccluded)
    carry_x: np.ndarray | None = None  # where the painting's source differs: the camera's motion
    carry_y: np.ndarray | None = None
    unseen: float = 0.0  # the share of frame t that t-1 does not show: new ground, or where
    # the picture changed whatever the flows say (CHANGED); most of it: a new shot (a cut)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Warp an (H, W, C) image of frame t-1 into frame t, bilinear (the metric's warp)."""
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def carry(self, image: np.ndarray) -> np.ndarray:
        """Warp a stylized uint8 result into frame t, bicubic: bilinear sampling at fractional
        shifts blurs, and carried from frame to frame the painting's strokes would wash out
        (measured: bicubic started warm frames closer to their optimum, fewer iterations)."""
        map_x, map_y = (self.map_x, self.map_y) if self.carry_x is None else \
            (self.carry_x, self.carry_y)
        return cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


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

    def warp(self, prev: np.ndarray, cur: np.ndarray, carry: bool = False) -> Warp:
        """The warp from RGB frame `prev` (t-1) to `cur` (t), with its reliability mask.

        With `carry` (a warp that will carry a painting: the warm start's, the temporal
        targets') it also looks at the pictures: where the camera's motion shows frame t as
        well as DIS's flow does, and which pixels the flow check flags that are not new ground.
        Without it (the metric), the warp is DIS's flow and the issue's mask alone."""
        g_prev, g_cur = grey(prev), grey(cur)
        backward = self(g_cur, g_prev)  # t -> t-1: where each pixel of t came from
        forward = self(g_prev, g_cur)  # t-1 -> t
        if not carry:
            return make_warp(backward, forward)
        return make_warp(backward, forward, prev, cur, camera_motion(g_prev, g_cur))


@dataclass
class Camera:
    """The motion most of the picture shares: a pan, a zoom, a shaking hand, or none at all."""
    model: np.ndarray  # (2, 3) float32 affine: a pixel of frame t -> where it was in frame t-1
    share: np.ndarray  # (H, W) float32: of the corners tracked around a pixel, the share that
    # follow the model (a subject that moves on its own, or parallax, brings it down)
    others: np.ndarray  # (H, W, 2) float32: how the corners around that do not follow it moved
    # (t -> t-1, as the backward flow), their Gaussian-weighted mean; NaN where there are none


def camera_motion(g_prev: np.ndarray, g_cur: np.ndarray) -> Camera | None:
    """The camera's motion from frame t-1 to t (grey), or None where too few corners agree.

    Corners are tracked from t back to t-1 (Lucas-Kanade, a few hundredths of a pixel on a
    still shot) and an affine map is fitted to them, ignoring those that move otherwise
    (RANSAC, 0.3 px); no motion or a shift instead where that fits as well (`simplest_motion`).
    DIS's dense flow wanders by tenths of a pixel from frame to frame on a camera's noise, and
    by pixels in a flat sky; the fitted motion does not (on the generated pan, a shift: 0.01 px
    from the true motion at 96 px against DIS's 0.07-0.3)."""
    h, w = g_cur.shape
    corners = cv2.goodFeaturesToTrack(g_cur, CORNERS, 0.01, 4)
    if corners is None or len(corners) < MIN_CORNERS:
        return None
    before, found, _ = cv2.calcOpticalFlowPyrLK(g_cur, g_prev, corners, None, winSize=(15, 15),
                                                maxLevel=3)
    found = found.ravel() == 1
    if found.sum() < MIN_CORNERS:
        return None
    here, there = corners[found].reshape(-1, 2), before[found].reshape(-1, 2)  # t, t-1
    model, follows = cv2.estimateAffine2D(here, there, method=cv2.RANSAC,
                                          ransacReprojThreshold=0.3)
    if model is None:
        return None
    follows = follows.ravel() == 1
    model = simplest_motion(here[follows], there[follows], model)
    # the share of followers among the corners near each pixel (Gaussian-weighted, sigma a
    # tenth of the width), on a grid of 8 px cells: at full size the blur cost 30 ms at 512 px
    gh, gw = -(-h // CELL), -(-w // CELL)
    cell = (here // CELL).astype(int)
    x, y = cell[:, 0].clip(0, gw - 1), cell[:, 1].clip(0, gh - 1)
    every, followers = np.zeros((gh, gw), np.float32), np.zeros((gh, gw), np.float32)
    np.add.at(every, (y, x), 1.0)
    np.add.at(followers, (y, x), follows.astype(np.float32))
    # and, the same way, the mean motion of the others (the subject's own, or the parallax's)
    moved = np.zeros((gh, gw, 2), np.float32)
    np.add.at(moved, (y[~follows], x[~follows]), (there - here)[~follows])
    sigma = 0.1 * w / CELL
    every, followers, moved = (cv2.GaussianBlur(a, (0, 0), sigma)
                               for a in (every, followers, moved))
    share = np.where(every > 1e-6, followers / np.maximum(every, 1e-6), follows.mean())
    apart = (every - followers)[..., None]
    others = np.where(apart > 1e-6, moved / np.maximum(apart, 1e-6), np.nan)
    share, others = (cv2.resize(a.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
                     for a in (share, others))
    return Camera(model.astype(np.float32), share, others)


CORNERS, MIN_CORNERS, CELL = 200, 8, 8


def simplest_motion(here: np.ndarray, there: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Of no motion, a shift and the fitted `affine` map, the simplest that moves the corners
    `here` (frame t, (n, 2)) to `there` (t-1) about as well: its median miss within 25 % of
    the affine map's. Least squares lets the few corners that the noise throws off by tenths
    of a pixel tilt the affine map: on a still shot with a subject moving across it (64 px)
    the fit moved the background by 0.01-0.07 px a frame while most corners stayed within
    0.005 px of none, and carried along it the painting stirred. A pan is a shift."""
    moved = (there - here).astype(np.float64)
    shift = np.median(moved, axis=0)
    misses = {"none": moved, "shift": moved - shift,
              "affine": here @ affine[:, :2].T + affine[:, 2] - there}
    median = {name: np.median(np.hypot(m[:, 0], m[:, 1])) for name, m in misses.items()}
    near = 1.25 * median["affine"] + 1e-3  # + a thousandth of a pixel: all three may be exact
    if median["none"] <= near:
        return np.eye(2, 3)
    if median["shift"] <= near:
        return np.hstack([np.eye(2), shift[:, None]])
    return affine


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
# Beyond this miss the picture changed, whatever the flows say: between the flat frames of a
# hard cut (a title card, a wall) both flows agree on no motion. It counts for the frame as a
# whole (Warp.unseen), not per pixel: repainting such pixels within a shot (the pan's ball,
# which DIS loses) measured worse (README, *Hard cuts and flashes*).
CHANGED = 48.0
# The camera's motion carries a pixel where most corners around it follow it (or its flow lies
# nearer it than the others' motion), and frame t-1 carried along it misses frame t by at most
# this much more than along DIS's flow (levels).
CAMERA_SHARE, CAMERA_SLACK = 0.75, 1.0


def make_warp(backward: np.ndarray, forward: np.ndarray, prev: np.ndarray | None = None,
              cur: np.ndarray | None = None, camera: Camera | None = None) -> Warp:
    """Sampling maps from the backward flow, and Ruder et al.'s reliability mask.

    A pixel is unreliable where the backward flow w and the forward flow w^ at the point it
    lands on do not cancel (|w + w^|^2 > 0.01 (|w|^2 + |w^|^2) + 0.5: occluded or badly
    matched), at motion boundaries (|grad w^|^2 > 0.01 |w^|^2 + 0.002), and where it comes from
    outside the previous frame. `filled` leaves out only the first and the last: at a motion
    boundary the carried picture is still the best starting point, just not a firm target.
    Given the RGB frames, `filled` also keeps the pixels the two flows disagree on where frame
    t-1 carried along the flow still shows frame t's picture: in a flat sky or wall any small
    motion fits, DIS's two guesses differ, and the pixels are not new ground. Given also the
    camera's motion, the painting is carried along it wherever it shows frame t as well as
    DIS's flow does and the corners around follow it (`carry_x`, `carry_y`): on a still shot
    DIS's noise moved the painting a little every frame, and it crawled. Where few corners
    around follow it, the camera's motion still carries the pixels whose flow lies nearer it
    than the others' motion: next to a subject moving across a still background, DIS drags the
    background along by tenths of a pixel, while a parallax's flow is the parallax's. The mask
    and `map_x` stay DIS's: they are the metric's. `unseen`, the share of new ground that tells
    a cut, also counts the pixels where the picture carried misses frame t's by far
    (`CHANGED`), to tell a cut between flat frames.
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
    outside = beyond(map_x, map_y, w, h)
    reliable = ~(occluded | outside | boundary)  # the mask, and the metric's
    carry_x = carry_y = None
    if prev is not None:
        miss = picture_miss(prev, cur, map_x, map_y)
        if camera is not None:
            (a, b, c), (d, e, f) = camera.model
            cam_x, cam_y = a * xs + b * ys + c, d * xs + e * ys + f
            cam_miss = picture_miss(prev, cur, cam_x, cam_y)
            ox, oy = cv2.split(camera.others)
            nearer = np.hypot(map_x - cam_x, map_y - cam_y) < np.hypot(bx - ox, by - oy)
            follows = (camera.share >= CAMERA_SHARE) | nearer  # (NaN: no others, not nearer)
            take = follows & (cam_miss <= miss + CAMERA_SLACK)
            carry_x, carry_y = np.where(take, cam_x, map_x), np.where(take, cam_y, map_y)
            miss = np.where(take, cam_miss, miss)
            outside = beyond(carry_x, carry_y, w, h)
        # the share unseen, which tells a cut, on smoothed pictures: a GIF dithers anew in
        # every frame, and its flat card was a new shot every frame
        source = (map_x, map_y) if carry_x is None else (carry_x, carry_y)
        smooth = picture_miss(prev, cur, *source, smooth=True)
        unseen = outside | (occluded & (smooth > SAME_PICTURE)) | (smooth > CHANGED)
        occluded &= miss > SAME_PICTURE
    filled = ~(occluded | outside)
    if prev is None:
        unseen = ~filled
    return Warp(map_x, map_y, reliable.astype(np.float32), filled.astype(np.float32),
                carry_x, carry_y, float(unseen.mean()))


def beyond(map_x: np.ndarray, map_y: np.ndarray, w: int, h: int) -> np.ndarray:
    """Where a source lies outside the frame. A pixel spans half a pixel either side of its
    centre: a source within that of the edge is the edge pixel itself (DIS finds hundredths
    of a pixel on a still shot's noise, and counted as new ground the frame's border ring was
    repainted every frame)."""
    return (map_x < -0.5) | (map_x > w - 0.5) | (map_y < -0.5) | (map_y > h - 0.5)


def picture_miss(prev: np.ndarray, cur: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
                 smooth: bool = False) -> np.ndarray:
    """How far RGB frame t-1 carried along a map misses frame t: the largest channel's
    difference (levels), averaged over 3x3 pixels. `smooth`: of the pictures smoothed first
    (Gaussian, 1 px), where a dither's dots cancel out (a GIF dithers a flat card anew in
    every frame: 0.8 of its pixels missed by over 6 levels, smoothed 0.02)."""
    carried = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if smooth:
        carried, cur = (cv2.GaussianBlur(image, (0, 0), 1.0) for image in (carried, cur))
    r, g, b = cv2.split(cv2.absdiff(carried, cur))  # OpenCV's max: 5x numpy's over axis 2
    return cv2.blur(cv2.max(cv2.max(r, g), b).astype(np.float32), (3, 3))
