"""Generate the small sample inputs used by vstyle's examples and tests.

Writes, next to this file:
  clip.mp4   24 frames at 12 fps, 256x144, H.264 yuv420p: a camera pan across a
             procedurally drawn landscape plus a red ball bouncing independently.
  style.jpg  256x256 procedural "painting": layered short brush strokes in a bold
             palette whose directions follow a smooth swirling field.

Everything is drawn from a seeded RNG, so reruns give byte-identical files.
Run:  python samples/make_samples.py
"""
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

OUT_DIR = Path(__file__).resolve().parent
FPS, N_FRAMES = 12, 24
FRAME_W, FRAME_H = 256, 144
PAN_STEP = 12  # px per frame; integer steps keep the pan free of resampling blur
SCENE_W = FRAME_W + PAN_STEP * (N_FRAMES - 1)
AA = cv2.LINE_AA


def ridge(rng, width, base, amp):
    """Smooth hill profile: a few random sines summed (y per column)."""
    x = np.arange(width)
    y = np.full(width, float(base))
    for k in range(3):
        period = rng.uniform(120, 360) / (k + 1)
        y += amp / (k + 1) * np.sin(2 * np.pi * x / period + rng.uniform(0, 2 * np.pi))
    return y.astype(int)


def fill_below(img, ys, color):
    """Paint everything below the profile ys with one colour."""
    rows = np.arange(img.shape[0])[:, None]
    img[rows >= ys[None, :]] = color


def draw_tree(img, x, ground, size):
    cv2.rectangle(img, (x - 2, ground - size), (x + 2, ground), (90, 60, 35), -1)
    cv2.circle(img, (x, ground - size), size // 2 + 3, (30, 110, 45), -1, AA)
    cv2.circle(img, (x - 3, ground - size - 3), size // 4 + 2, (60, 150, 60), -1, AA)


def draw_house(img, x, ground, wall, roof):
    w, h = 26, 18
    cv2.rectangle(img, (x, ground - h), (x + w, ground), wall, -1)
    tri = np.array([[x - 4, ground - h], [x + w + 4, ground - h], [x + w // 2, ground - h - 14]])
    cv2.fillPoly(img, [tri], roof, AA)
    cv2.rectangle(img, (x + 4, ground - 13), (x + 10, ground - 7), (250, 220, 120), -1)  # window
    cv2.rectangle(img, (x + 16, ground - 12), (x + 21, ground), (80, 50, 30), -1)  # door


def render_scene(rng):
    """One wide RGB landscape that the camera pans across."""
    h, w = FRAME_H, SCENE_W
    t = np.linspace(0, 1, h)[:, None, None]
    sky_top, sky_low = np.array([40, 90, 170]), np.array([250, 200, 150])
    img = np.broadcast_to(sky_top * (1 - t) + sky_low * t, (h, w, 3)).astype(np.uint8).copy()
    cv2.circle(img, (w // 3, 34), 26, (255, 235, 170), -1, AA)  # halo
    cv2.circle(img, (w // 3, 34), 18, (255, 210, 60), -1, AA)  # sun
    for cx in rng.integers(0, w, 5):  # flat clouds made of overlapping ellipses
        cy = int(rng.integers(12, 40))
        for dx, dy in ((-14, 0), (0, -4), (14, 0)):
            centre = (int(cx) + dx, cy + dy)
            cv2.ellipse(img, centre, (14, 7), 0, 0, 360, (245, 245, 250), -1, AA)
    fill_below(img, ridge(rng, w, 72, 14), (110, 120, 175))  # far blue-grey mountains
    fill_below(img, ridge(rng, w, 92, 9), (90, 150, 80))  # mid green hills
    near = ridge(rng, w, 114, 6)
    walls = [(230, 200, 150), (220, 120, 90), (240, 240, 225)]
    for x in range(10, w - 30, 46):  # houses and trees sit on the near hill
        ground = int(near[x + 10]) + 2
        if rng.random() < 0.4:
            draw_house(img, x, ground, walls[rng.integers(len(walls))], (150, 40, 40))
        else:
            draw_tree(img, x + 10, ground, int(rng.integers(12, 22)))
    fill_below(img, near + 3, (150, 175, 60))  # near yellow-green field
    fill_below(img, np.full(w, 132), (60, 110, 170))  # river along the bottom
    for x in range(0, w, 18):  # ripples give the water some texture to stylise
        cv2.line(img, (x, 136 + x % 5), (x + 8, 136 + x % 5), (170, 200, 230), 1, AA)
    return img


def draw_ball(frame, i):
    """Red ball travelling right-to-left (against the pan) in bounces."""
    t = i / (N_FRAMES - 1)
    x = 230 - 200 * t
    y = 118 - 60 * abs(np.sin(np.pi * 2.5 * t))
    shift = 4  # sub-pixel drawing via cv2's fixed-point 'shift' argument
    c = (int(round(x * 2**shift)), int(round(y * 2**shift)))
    cv2.ellipse(frame, (int(x), 126), (10, 3), 0, 0, 360, (50, 70, 40), -1, AA)  # shadow
    cv2.circle(frame, c, 10 << shift, (220, 30, 30), -1, AA, shift)
    glint = (c[0] - (3 << shift), c[1] - (3 << shift))  # highlight so it reads as a sphere
    cv2.circle(frame, glint, 3 << shift, (255, 170, 160), -1, AA, shift)


def write_clip(path, rng):
    scene = render_scene(rng)
    writer = imageio_ffmpeg.write_frames(
        str(path), (FRAME_W, FRAME_H), fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=1, quality=None, output_params=["-crf", "20"])
    writer.send(None)  # prime the generator
    for i in range(N_FRAMES):
        x0 = i * PAN_STEP
        frame = np.ascontiguousarray(scene[:, x0:x0 + FRAME_W])
        draw_ball(frame, i)
        writer.send(frame)
    writer.close()


# Van Gogh-ish palette (RGB): deep/mid blues, cyan, yellows, a warm orange, dark outline.
PALETTE = np.array([[20, 40, 110], [40, 80, 170], [80, 140, 210], [120, 190, 220],
                    [240, 210, 60], [250, 180, 40], [230, 120, 30], [15, 25, 50]])


def swirl_angle(x, y, size):
    """Smooth flow direction: gentle waves plus two vortices."""
    u, v = x / size, y / size
    a = 0.8 * np.sin(2 * np.pi * v * 1.5) + 0.5 * np.cos(2 * np.pi * u)
    for cx, cy, s in ((0.3, 0.35, 1), (0.72, 0.7, -1)):
        d = np.hypot(u - cx, v - cy)
        w = np.exp(-(d / 0.22) ** 2)
        a = a * (1 - w) + w * (np.arctan2(v - cy, u - cx) + s * np.pi / 2)
    return a


def pick_colour(rng, x, y, size):
    """Blues dominate; yellow/orange near the vortex centres, dark accents rare."""
    d = min(np.hypot(x / size - 0.3, y / size - 0.35), np.hypot(x / size - 0.72, y / size - 0.7))
    if rng.random() < 0.05:
        idx = 7
    elif rng.random() < np.exp(-(d / 0.15) ** 2) + 0.08:
        idx = rng.integers(4, 7)
    else:
        idx = rng.integers(0, 4)
    return PALETTE[idx] + rng.integers(-20, 21, 3)


def write_style(path, rng, size=256):
    img = np.empty((size, size, 3), np.uint8)
    img[:] = PALETTE[1]
    # Coarse to fine layers: wide long strokes first, thin short ones on top.
    for count, thick, length in ((500, 9, 22), (1400, 5, 14), (2200, 3, 9)):
        for _ in range(count):
            x, y = rng.uniform(0, size, 2)
            a = swirl_angle(x, y, size) + rng.normal(0, 0.15)
            dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
            colour = tuple(int(c) for c in np.clip(pick_colour(rng, x, y, size), 0, 255))
            cv2.line(img, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)), colour, thick, AA)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)  # soften aliasing so it reads as paint
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def main():
    clip, style = OUT_DIR / "clip.mp4", OUT_DIR / "style.jpg"
    write_clip(clip, np.random.default_rng(1234))
    write_style(style, np.random.default_rng(5678))
    print(f"wrote {clip} ({clip.stat().st_size} B) and {style} ({style.stat().st_size} B)")


if __name__ == "__main__":
    main()
