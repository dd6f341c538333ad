"""Decode any input (video, GIF, folder, still) into frames + timing, and encode frames atomically.

Frames are RGB uint8 arrays of shape (H, W, 3). Decoding and encoding both stream, so memory stays
flat however long the clip. ffmpeg is the one imageio-ffmpeg ships; its failures, like those of
Pillow and OpenCV, leave this module as a VStyleError whose one line names the file and the fix.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from bisect import bisect_left, bisect_right
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from itertools import accumulate, chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (VStyleError, batch_call, listed, opt, options_named_as_flags, plural,
                     warn)
from .options import MAX_SIZE, seconds

# what ffmpeg decodes: phones, cameras (.mts/.m2ts: AVCHD), broadcast (.ts), older web video
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts",
              ".m2ts", ".flv", ".wmv", ".3gp", ".ogv"}
IMAGE_EXTS = {".png", ".apng", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
OUTPUT_EXTS = {".gif": "gif", ".mp4": "mp4", ".webp": "webp", ".png": "image", ".jpg": "image",
               ".jpeg": "image"}
FOLDER_FPS = 10.0  # folders and stills carry no timing of their own
LARGE_GIF_BYTES = 20 * 1024 * 1024
# libwebp's lossy quality (0-100). At 90, real footage came out a quarter of a GIF's size and
# as close to the frames (bench/formats.py); 95 was 1.5x larger for +2 dB.
WEBP_QUALITY = 90
# ffmpeg streams an animated WebP through libwebp; where it has no libwebp (a system ffmpeg
# named by IMAGEIO_FFMPEG_EXE), Pillow encodes it from all its frames at once (4 bytes a
# pixel): 4 GiB is ~7,000 frames at 512x288, ~500 at 1920x1080
WEBP_MAX_BYTES = 4 * 2**30
FRAME_MAX_MS = {"gif": 655350, "webp": 2**24 - 1}  # 16-bit centiseconds; 24-bit milliseconds
GIF_DITHER = {"bayer": "bayer:bayer_scale=5", "sierra2_4a": "sierra2_4a",
              "floyd_steinberg": "floyd_steinberg", "none": "none"}
# mp4 holds these audio codecs as they are; anything else (pcm, vorbis...) is re-encoded to AAC.
MP4_AUDIO_COPY = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}
_FRAME_NAME = re.compile(r"\d{5,}\.png")
# In every folder of frames vstyle writes: what lets a later run replace that folder (and only
# such a folder: a user's own 00001.png... must never be deleted)
FOLDER_MARK = ".vstyle"


def _not_rotation(record: logging.LogRecord) -> bool:
    # imageio-ffmpeg logs a warning for every video filmed upright on a phone (stored sideways
    # with a rotation flag): ffmpeg turns the frames upright, and so should we, without a word.
    return "is different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_not_rotation)


@dataclass
class Timing:
    fps: float  # frames per second (GIF input: n / total duration)
    durations_ms: list[int] | None  # per-frame durations (GIF input), else None
    loop: int = 0  # GIF loop count as ffmpeg's -loop: 0 = forever, -1 = play once (no loop block)

    def sliced(self, start: int, end: int) -> "Timing":
        """The timing of frames [start, end)."""
        if self.durations_ms is None:
            return Timing(self.fps, None, self.loop)
        durations = self.durations_ms[start:end]
        return Timing(1000 * len(durations) / max(sum(durations), 1), durations, self.loop)

    def seconds(self, n: int) -> float:
        """How long the first n frames play."""
        if self.durations_ms is not None and n <= len(self.durations_ms):
            return sum(self.durations_ms[:n]) / 1000
        return n / self.fps


@dataclass
class Source:
    path: Path
    kind: str  # "video" | "animation" (GIF, animated WebP or PNG) | "folder" | "image"
    n_frames: int  # exact count, already capped by max_frames
    size: tuple[int, int]  # (width, height) of the source frames (folder: the first image's)
    timing: Timing
    has_audio: bool  # video with an audio stream
    files: list[Path] = field(default_factory=list, repr=False)  # folder: its images, in order
    start: int = 0  # a window (a chunk of a long video) starts this many frames in
    matrix: str = ""  # video: the YUV matrix to decode with where the file names none
    resample: str = ""  # video: the rate (ffmpeg's fps filter) its frames are taken at (--fps)
    picks: list[int] | None = field(default=None, repr=False)  # GIF, --fps: its frames shown
    seek: float = 0.0  # video, --start: seconds in where it starts
    until: float | None = None  # video, --end: where it stops
    seeks: bool = False  # video: ffmpeg seeks to start_time (else it decodes from 0:00 and trims)
    start_time: float = 0.0  # video: where --start is, in seconds from the file's start
    sound_from: float = 0.0  # video: frame 1's time from the file's start, where its sound is
    interlaced: bool = False  # video: two fields woven into each frame (TV, DV, camcorders)

    def frames(self, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Lazily decode the n_frames frames, RGB uint8 (H, W, 3), resized to size=(w, h) if given."""
        decode = {"video": _video_frames, "animation": _animation_frames, "folder": _folder_frames,
                  "image": _folder_frames}[self.kind]
        for frame in decode(self):
            # One resize straight to the target: folder images of other sizes follow the first's.
            yield resize(frame, size or self.size)

    def window(self, start: int, end: int) -> "Source":
        """Frames [start, end) of this source, as a source of their own (without audio)."""
        if not 0 <= start < min(end, self.n_frames):
            raise VStyleError(f"frame_range={(start, end)}: pass (start, end) with 0 <= start < "
                              f"end, start below the {self.n_frames} frames")
        end = min(end, self.n_frames)
        return replace(self, start=self.start + start, n_frames=end - start,
                       timing=self.timing.sliced(start, end), has_audio=False)


# --- images --------------------------------------------------------------------------------------

def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode → RGB uint8; transparency is composited on white, as a viewer shows it."""
    image = _to_srgb(ImageOps.exif_transpose(image))  # phone photos store their rotation in EXIF
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit and float greys: Pillow's own conversion clips at 255 instead of scaling.
        values = np.asarray(image)
        image = Image.fromarray(_levels(values, sixteen_bit=image.mode.startswith("I;16")), "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.array(image.convert("RGB"))


def _levels(values: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """Numbers as 0-255 levels, by their range: floats up to 2 are fractions of 1 (a filter or
    a resize overshoots 1 a little; no image in levels peaks that low), values above 255 are
    16-bit (0-65535), anything else is already in levels."""
    floats = np.issubdtype(values.dtype, np.floating)
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the image holds NaN or infinite values")
    top = values.max(initial=0)
    if sixteen_bit or top > 255:
        values = values / 257
    elif floats and top <= 2:
        values = values * 255
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """An array given to the Python API, as RGB uint8 (H, W, 3): greys, alpha (on white),
    floats in [0, 1] and 16-bit values are converted, judged by their range (a uint16 array
    with nothing above 255 holds 8-bit levels); other shapes, complex numbers and clearly
    negative values are a VStyleError. A Pillow image is read as an image file is."""
    if isinstance(image, Image.Image):
        if 0 in image.size:
            raise VStyleError(f"{name} is an empty image ({image.width}x{image.height} px): "
                              "pass a picture")
        if getattr(image, "n_frames", 1) > 1:  # as a path to it is refused
            raise VStyleError(f"{name} is an animated image ({image.n_frames} frames): "
                              "stylize_image takes one picture; vstyle.stylize takes clips")
        try:
            return _to_rgb(image)
        except ValueError as e:  # NaN in a float image
            raise VStyleError(f"{name}: {e}") from None
    a = np.asarray(image)
    if a.ndim == 0:  # None, a number, a string...
        raise VStyleError(f"{name} is of type {type(image).__name__}, not an image: pass a "
                          "numpy array, (height, width, 3) uint8 levels or floats in [0, 1]")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or 0 in a.shape or np.iscomplexobj(a) or \
            not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise VStyleError(f"{name} is an array of shape {a.shape} and type {a.dtype}: pass an "
                          "RGB image, (height, width, 3) uint8 levels or floats in [0, 1]")
    if a.dtype != np.uint8:
        a = a.astype(np.float64) * 255 if a.dtype == bool else a
        if not np.isfinite(a).all():
            raise VStyleError(f"{name} holds NaN or infinite values: pass finite values")
        low, top = float(a.min()), float(a.max())
        # a resize may undershoot 0 a little; more is another convention, e.g. [-1, 1]
        if low < -0.1 * (1 if np.issubdtype(a.dtype, np.floating) and top <= 2 else 255):
            raise VStyleError(f"{name} holds values down to {low:.3g}: pass levels 0-255 or "
                              "floats in [0, 1] (from [-1, 1]: (x + 1) / 2)")
        a = _levels(a)
    if a.shape[2] == 4:  # transparency on white, as for image files
        alpha = a[..., 3:].astype(np.float64) / 255
        a = (a[..., :3] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)


def _to_srgb(image: Image.Image) -> Image.Image:
    """An image with an embedded colour profile (phone photos: Display P3; scans: Adobe RGB,
    CMYK), converted to sRGB, which the rest of the pipeline and every output assume. Taken as
    they are, the pixels come out wrong: a Display P3 photo's (88, 177, 77) is the sRGB green
    (40, 180, 60). Without a profile, or with one littlecms cannot read, pixels are sRGB."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without littlecms
        return image
    try:
        return ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                         _srgb_profile(),
                                         outputMode="RGBA" if image.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):  # a profile it cannot use
        return image


@lru_cache(maxsize=1)
def _srgb_profile():
    from PIL import ImageCms
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _read_image(path: Path, problem: str) -> np.ndarray:
    """Decode an image file; a failure is a VStyleError saying `problem` (with {path}, {why},
    and {fault}: no image at all, or a damaged one)."""
    try:
        with Image.open(path) as image:
            return _to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        fault = "is not an image" if isinstance(error, UnidentifiedImageError) else \
            "is damaged or cut short"
        raise VStyleError(problem.format(path=path, why=_brief(error), fault=fault)) from None


def load_image(path: str | Path, what: str = "style image") -> np.ndarray:
    """An image file (a style, or stylize_image's content) as RGB uint8 (H, W, 3), whatever its
    mode (grey, RGBA, palette, 16-bit)."""
    if Path(path).is_dir():
        raise VStyleError(f"{what} {path} is a folder: pass an image file in it")
    if not Path(path).is_file():
        raise VStyleError(f"{what} {path} not found: check the path")
    if clip := what_clip(Path(path)):
        order = "vstyle INPUT STYLE -o OUTPUT" if options_named_as_flags() else \
            "stylize(input, style, output)"
        raise VStyleError(f"style image {path} is {clip}: the input comes first, then the "
                          f"style ({order})" if what == "style image" else
                          f"{what} {path} is {clip}: stylize_image takes one image; "
                          "vstyle.stylize takes clips")
    kind = "painting" if what == "style image" else "image"
    return _read_image(Path(path), f"{what} {{path}} {{fault}} ({{why}}): pass a .jpg or "
                                   f".png {kind}")


def fit_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(w, h) scaled so that the long side is long_side, keeping the aspect; each side >= 16."""
    w, h = size
    scale = long_side / max(w, h)
    return max(16, round(w * scale)), max(16, round(h * scale))


def min_long_side(size: tuple[int, int]) -> int:
    """The least long side at which fit_size keeps the short side at 16 px or more."""
    w, h = size
    long_side = math.floor(15.5 * max(w, h) / min(w, h))
    while round(min(w, h) * long_side / max(w, h)) < 16:
        long_side += 1
    return long_side


def frame_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """The processed frames' (w, h) for --size long_side; refused where the short side would
    fall under VGG19's 16 px, which fit_size could only meet by distorting the picture."""
    w, h = size
    short = round(min(w, h) * long_side / max(w, h))
    if short < 16:
        needed = min_long_side(size)
        fix = (f"use {opt('size', needed)} or more" if needed <= MAX_SIZE else
               f"even {opt('size', MAX_SIZE)} cannot: crop or pad the input")
        raise VStyleError(f"{opt('size', long_side)} makes the {w}x{h} frames {short} px on their "
                          f"short side; VGG19 needs 16: {fix}")
    return fit_size(size, long_side)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to size=(w, h): INTER_AREA when shrinking (no aliasing), INTER_CUBIC when enlarging."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    shrinking = size[0] * size[1] < w * h
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def natural_key(path: Path) -> list:
    """frame2 before frame10, case-insensitive: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def _brief(error: BaseException) -> str:
    """The last non-empty line of an error, to keep user messages to one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# --- decoding ------------------------------------------------------------------------------------

def open_source(path: str | Path, max_frames: int | None = None,
                fps: float | None = None, start: float = 0.0, end: float | None = None,
                on_notice: Callable[[str], None] | None = None) -> Source:
    """Probe an input (kind, exact frame count, size, timing, audio) without decoding it all.

    fps (--fps): the output's frame rate. A video or GIF is resampled to it: frames are
    dropped (or repeated), the clip keeps its length and its sound, and fewer frames are
    stylized. A folder or a still just plays at it. start, end (--start, --end, seconds): the
    part of a clip to stylize; max_frames counts from start. on_notice is told before a long
    video is read through to count its frames (minutes for a film)."""
    path = Path(path)
    start, end = seconds(start, "start") or 0.0, seconds(end, "end")  # "1:30" taken too
    if not path.exists():
        raise VStyleError(f"input {path} not found: check the path")
    kind = input_kind(path)
    if kind != "folder" and path.stat().st_size == 0:
        raise VStyleError(f"input {path} is empty (0 bytes): pass a complete file")
    if kind == "folder":
        source = _open_folder(path, fps or FOLDER_FPS)
    elif kind == "video":
        source = _open_video(path, max_frames, fps, start, end, on_notice)
    elif kind == "animation":
        source = _open_animation(path, fps)
    elif kind == "image":
        size = _read_input_image(path).shape[1::-1]
        source = Source(path, "image", 1, size, Timing(fps or FOLDER_FPS, None), False, [path])
    else:
        supported = ", ".join(sorted(VIDEO_EXTS | IMAGE_EXTS | {".gif"}))
        raise VStyleError(f"input {path} has an unsupported extension: pass a folder or one of {supported}")
    if kind != "video" and (start or end is not None):
        source = _cut(source, start, end)
    if max_frames is not None and max_frames < source.n_frames:
        source.n_frames, source.timing = max_frames, source.timing.sliced(0, max_frames)
    return source


def input_kind(path: Path) -> str | None:
    """What an input is, by its name and, for a WebP or PNG, its chunks (no pixels decoded):
    "folder", "video", "animation" (a GIF, an animated WebP or PNG), "image", or None where
    the extension is not one vstyle reads."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS:
        return "video"
    if suffix == ".gif" or (suffix in ANIMATED and _is_animated(path)):
        return "animation"
    return "image" if suffix in IMAGE_EXTS else None


def what_clip(path: Path) -> str:
    """"a video", "an animated GIF (36 frames)" and so on where a file holds a clip, else ""
    (a GIF of one frame is a picture: some paintings come as GIFs)."""
    kind = input_kind(path)
    if kind == "video":
        return "a video"
    if kind != "animation":
        return ""
    try:
        n = _animation_info(path)[0]
    except (OSError, ValueError):  # reading it as an image says what is wrong with it
        return ""
    return f"an animated {ANIMATED[path.suffix.lower()]} ({n} frames)" if n > 1 else ""


def _read_input_image(path: Path) -> np.ndarray:
    return _read_image(path, "input image {path} cannot be read ({why}): re-save it as .png or .jpg")


def some_names(paths: Sequence[Path], most: int = 3) -> str:
    """"a.mp4, b/ and 4 more": a few names for a message (folders end in /)."""
    names = [p.name + "/" * p.is_dir() for p in paths[:most]]
    more = len(paths) - len(names)
    return listed(names) if not more else f"{', '.join(names)} and {more} more"


def folder_images(path: Path) -> list[Path]:
    """A folder's frames: its images in natural order (hidden files left out)."""
    return sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS
                   and not p.name.startswith(".") and p.is_file()), key=natural_key)


def folder_clips(path: Path) -> list[Path]:
    """A folder's videos and animations (GIF, animated WebP or PNG), in natural order."""
    return sorted((p for p in path.iterdir() if p.is_file() and
                   input_kind(p) in ("video", "animation")), key=natural_key)


def _open_folder(path: Path, fps: float) -> Source:
    files = folder_images(path)
    # an animated WebP or PNG is a clip, not a frame: read as one, all but its first frame
    # would be dropped unasked (videos and GIFs beside frames are not read: left alone)
    clips = [p for p in files if input_kind(p) == "animation"] if files else folder_clips(path)
    if clips:
        frames = len(files) - len(clips)
        beside = f" beside {plural(frames, 'frame')}" if frames > 0 else ""
        raise VStyleError(f"folder {path} holds clips ({clips[0].name}"
                          f"{f' and {len(clips) - 1} more' if len(clips) > 1 else ''}){beside}, "
                          f"not only frames: stylize the clips with {batch_call(str(path))} or "
                          "one by one, and move them out to stylize the frames")
    if not files:
        raise VStyleError(f"folder {path} has no images: put {', '.join(sorted(IMAGE_EXTS))} frames in it")
    beside = folder_clips(path)
    if beside:  # read as frames, yet it holds clips: perhaps the clips were meant
        warn(f"folder {path} is read as {plural(len(files), 'frame')}; left out: "
             f"{some_names(beside)} (stylize clips with {batch_call(str(path))})")
    size = _read_input_image(files[0]).shape[1::-1]
    return Source(path, "folder", len(files), size, Timing(fps, None), False, files)


def _folder_frames(source: Source) -> Iterator[np.ndarray]:
    for path in (source.files or [source.path])[source.start: source.start + source.n_frames]:
        yield _read_input_image(path)  # Source.frames resizes it


def _unreadable_video(path: Path, error: BaseException) -> VStyleError:
    if "does not contain any stream" in str(error):  # ffmpeg found no picture to decode
        return VStyleError(f"video {path} has no video frames (no video stream, or an empty "
                           "one): pass a video with pictures, not an audio-only file")
    return VStyleError(f"video {path} cannot be decoded ({_brief(error)}): it is corrupt or "
                       "truncated; re-export or re-download it")


def _open_video(path: Path, max_frames: int | None = None, fps: float | None = None,
                start: float = 0.0, end: float | None = None,
                on_notice: Callable[[str], None] | None = None) -> Source:
    resample = str(Fraction(fps).limit_denominator(1001)) if fps else ""  # a ratio for ffmpeg
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
    except Exception as error:  # anything ffmpeg or its header parser raise: the file is unusable
        raise _unreadable_video(path, error) from None
    if start and meta.get("duration") and start >= meta["duration"]:  # found without decoding
        raise _past_the_end(path, "video", start, meta["duration"])
    if on_notice and (said := _long_count(path, meta, max_frames, fps, start, end)):
        on_notice(said)
    try:
        described = _description(path)
        # --start counts from the first picture, which may come after the file's start (a TS
        # camcorder clip's sound starts a few frames before it; a cut one mid-GOP, later)
        picture = _first_picture(path, described) if start or "audio_codec" in meta else 0.0
        count = _count_cut(path, max_frames, resample, start, end, picture + start)
        n, length, short = count.n, count.length, count.short
        sound = _sound_from(path, picture, start, count.seeks) if "audio_codec" in meta else 0.0
    except Exception as error:  # anything ffmpeg raises: the file is unusable
        raise _unreadable_video(path, error) from None
    if short and n and (max_frames is None or n < max_frames):  # (the frames asked for are there)
        warn(f"video {path} is cut short (an unfinished download or copy?): its index lists "
             f"more frames than the file holds; stylizing the {plural(n, 'frame')} that are "
             "there")
    if not n and end is not None:
        raise VStyleError(f"no frame of video {path} starts between {opt('start', start)} s "
                          f"and {opt('end', end)} s: widen the range"
                          f"{f', or pass {CUT_SHORT}' * short}")
    if not n and start:  # (the index's length is not the file's)
        raise _past_the_end(path, "video", start, None if short else meta.get("duration"),
                            f", or {CUT_SHORT}" * short)
    if not n:
        raise _unreadable_video(path, ValueError("no decodable frames"))
    fps = fps or meta.get("fps") or (n / length if length else 25.0)
    if not resample and length and abs(n / fps - length) > 0.5 / fps:
        # Variable frame rate (phones): ffmpeg's stated rate is a guess, and the output would
        # run shorter or longer than the sound. Keep the average, which keeps the length.
        # (Also corrects a rate ffmpeg states rounded, 23.98 for 24000/1001, on long clips.)
        # Half a frame: a constant rate's clips measured exact (35 files, 9 codecs), and 15
        # frames over 1 s stated at 13.64 fps ran 1.36 frames long under the old 1.5.
        fps = n / length
    return Source(path, "video", n, _display_size(described, meta), Timing(float(fps), None),
                  "audio_codec" in meta, matrix=_assumed_matrix(meta.get("pix_fmt", ""),
                                                                meta["source_size"]),
                  resample=resample, seek=start, until=end, seeks=count.seeks,
                  start_time=picture + start, sound_from=sound,
                  interlaced=_interlaced(described))


# Pixels times seconds of video past which counting its frames is worth a word: a minute of
# 1080p, which ffmpeg decoded in 4 s on 2 cores (a film: minutes).
LONG_COUNT = 1920 * 1080 * 60


def _long_count(path: Path, meta: dict, limit: int | None, fps: float | None, start: float,
                end: float | None) -> str:
    """What to say before decoding a long video through to count its frames; "" for a short
    one (from ffmpeg's header: its length and size; --max-frames stops the count early)."""
    rate = fps or meta.get("fps") or 25.0
    seconds = max(0.0, min(end or math.inf, meta.get("duration") or 0.0) - start)
    if limit is not None:
        seconds = min(seconds, limit / rate)
    w, h = meta["size"]
    if seconds * w * h < LONG_COUNT:
        return ""
    clock = f"{int(seconds) // 3600}:{int(seconds) // 60 % 60:02d}:{int(seconds) % 60:02d}"
    return (f"counting the frames of {path.name} ({clock} at {w}x{h}): ffmpeg decodes it once "
            "through first, which takes a while for a long video")


# Containers with an index of their keyframes, where ffmpeg's seeking lands where it should
# (in a TS or an MPEG-PS it searches the bytes, and may land past a keyframe: frames lost)
SEEKABLE = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".3gp"}


@dataclass
class Count:
    """A video's frames as ffmpeg decodes them to nowhere."""
    n: int
    length: float  # seconds, timed from the first picture
    short: bool  # the file is cut short: its index lists frames past its end
    seeks: bool = False  # ffmpeg may seek to --start (else it decodes from 0:00 and trims)


def _count_cut(path: Path, limit: int | None, resample: str, start: float,
               end: float | None, start_time: float) -> Count:
    """_count_frames of a video cut to the frames that start in [start, end) (--start, --end;
    seconds from its first picture, at start_time in the file), and whether ffmpeg may seek
    there. Seeking is tried first (a late start in a long film then costs no decoding from
    0:00) where it decodes cleanly: from a keyframe, some real files decode into garbage
    (cockatoo.mp4, even from its IDR frame at 3.8 s); those are trimmed instead."""
    seeking = ["-ss", f"{start_time:.6f}"]
    if start and path.suffix.lower() in SEEKABLE and _decodes_cleanly(path, seeking):
        count = _count_frames(path, limit, _timeline(resample, start, end, True), seeking)
        if count.n:
            return replace(count, seeks=True)
    return _count_frames(path, limit, _timeline(resample, start, end, False))


# frames decoded after a seek to call it clean: cockatoo.mp4's damage showed in 18 of its first 20
SEEK_CHECK_FRAMES = 24


def _decodes_cleanly(path: Path, seeking: Sequence[str]) -> bool:
    """Whether the first frames after a seek decode without a damaged one (-xerror stops there)."""
    return _decode(path, ["-xerror", *seeking], ["-frames:v", str(SEEK_CHECK_FRAMES)])[0] == 0


def _decode(path: Path, before: Sequence[str] = (), after: Sequence[str] = ()) -> tuple[int, str]:
    """ffmpeg decoding the first video stream to nowhere: its exit code and its log."""
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *before, "-i",
                           str(path), "-map", "0:v:0", *after, "-f", "null", "-"],
                          capture_output=True, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stderr.decode(errors="replace")


def _timeline(resample: str, start: float = 0.0, end: float | None = None,
              seeks: bool = False) -> list[str]:
    """ffmpeg filters: timestamps from the first picture, the frames that start in [start, end),
    then --fps's resampling. Where ffmpeg seeks, the timestamps it gives count from start."""
    if seeks:
        cut = [f"trim=end={end - start:.6f}"] if end is not None else []
        return [*cut, "setpts=PTS-STARTPTS", *_resampled(resample)]
    cut = [f"trim=start={start:.6f}" + (f":end={end:.6f}" if end is not None else ""),
           "setpts=PTS-STARTPTS"] if start or end is not None else []
    return ["setpts=PTS-STARTPTS", *cut, *_resampled(resample)]


CUT_SHORT = "the complete file (this one is cut short: an unfinished download or copy?)"


def _past_the_end(path: Path, what: str, start: float, length: float | None,
                  also: str = "") -> VStyleError:
    long = f" ({length:g} s long)" if length else ""
    return VStyleError(f"{opt('start', start)} s is past the last frame of {what} {path}"
                       f"{long}: pass an earlier {opt('start')}{also}")


def _cut(source: Source, start: float, end: float | None) -> Source:
    """An animation's or a folder's frames from the one on screen at `start` to the last that
    starts before `end` (a video is cut by ffmpeg as it is read: _count_cut)."""
    if source.kind == "image":
        raise VStyleError(f"{opt('start')} and {opt('end')} cut clips; {source.path} is one "
                          "image: leave them out")
    durations = source.timing.durations_ms
    starts = ([t / 1000 for t in accumulate(durations, initial=0)] if durations is not None
              else [i / source.timing.fps for i in range(source.n_frames + 1)])
    slack = START_SLACK_MS / 1000  # as gif_picks: a frame's start is rounded to its format's clock
    first = bisect_right(starts, start + slack) - 1
    if first >= source.n_frames:
        raise _past_the_end(source.path, "clip" if source.kind == "animation" else "folder",
                            start, starts[-1])
    last = source.n_frames if end is None else bisect_left(starts, end - slack)
    return source.window(first, max(last, first + 1))


def _description(path: Path) -> str:
    """ffmpeg's description of a file: its streams, codecs, pixel aspect (asked once a file:
    probing and writing an MP4 with its sound both read it)."""
    try:
        stat = path.stat()
    except OSError:  # ffmpeg says what is wrong with it
        return _described(str(path), 0, -1)
    return _described(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _described(path: str, mtime_ns: int, size: int) -> str:  # the file's identity as the key
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
                           capture_output=True, stdin=subprocess.DEVNULL)
    return probe.stderr.decode(errors="replace")


def _shown_at(path: Path, seeking: Sequence[str] = (), filters: Sequence[str] = ()) -> float:
    """The time (ffmpeg's pts_time) of the first picture ffmpeg decodes, after `filters`."""
    _, log = _decode(path, seeking, ["-vf", ",".join([*filters, "showinfo"]), "-frames:v", "1"])
    match = re.search(r"\bn:\s*0\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.]+)", log)
    return float(match[1]) if match else 0.0


def _first_picture(path: Path, described: str) -> float:
    """Seconds from the file's start to its first decoded picture (-copyts: its own time)."""
    file = re.search(r"Duration: .*?, start: (-?[\d.]+)", described)
    return max(0.0, _shown_at(path, ["-copyts"]) - float(file[1])) if file else 0.0


def _sound_from(path: Path, picture: float, start: float, seeks: bool) -> float:
    """Where frame 1 is in the file, so that its sound is cut there: the first picture, or
    the first frame from --start on (one frame later than --start, or a held frame's worth)."""
    if not start:
        return picture
    if seeks:  # times after a seek count from where it went
        return picture + start + _shown_at(path, ["-ss", f"{picture + start:.6f}"])
    return picture + _shown_at(path, filters=["setpts=PTS-STARTPTS", f"trim=start={start:.6f}"])


def _video_line(described: str) -> str:
    """The first video stream's line of ffmpeg's description ("" where there is none)."""
    line = re.search(r"Video: .*", described)
    return line.group() if line else ""


def _interlaced(described: str) -> bool:
    """Whether the first video stream says its fields are woven ("yuv420p(tv, top first)")."""
    return bool(re.search(r"[(,] ?(top|bottom)( coded)? first", _video_line(described)))


def _display_size(described: str, meta: dict) -> tuple[int, int]:
    """The size a player shows: DVD and HDV video store wider pixels (720x480 at 8:9 and
    1440x1080 at 4:3, a 'sample aspect ratio'), which players stretch and vstyle stretches
    too, never shrinking a side. imageio-ffmpeg's size is after a phone's turn, which turns
    the pixel aspect with it."""
    w, h = meta["size"]
    # a container's aspect comes last, and wins
    shapes = re.findall(r"SAR (\d+):(\d+) DAR", _video_line(described))
    if not shapes or "0" in shapes[-1]:
        return w, h
    aspect = Fraction(int(shapes[-1][0]), int(shapes[-1][1]))
    if tuple(meta["size"]) != tuple(meta["source_size"]):  # turned 90 degrees
        aspect = 1 / aspect
    return (round(w * aspect), h) if aspect > 1 else (w, round(h / aspect))


# YUV matrices ffmpeg names in a stream's description, e.g. "yuv420p(tv, bt709, progressive)"
_MATRICES = {"bt709", "bt470bg", "smpte170m", "bt2020nc", "bt2020c", "smpte240m", "fcc", "ycgco",
             "chroma-derived-nc", "chroma-derived-c", "ictcp", "gbr"}


def _assumed_matrix(pix_fmt: str, size: tuple[int, int]) -> str:
    """For YUV video that names no colour matrix (common: screen recorders, many encoders),
    the one players use: BT.709 at HD sizes (mpv, VLC and browsers guess so), where ffmpeg
    would decode BT.601, off by up to 30 levels (green (29, 199, 28) read as (42, 228, 34)).
    "" where the file names one, or for SD sizes, where both agree on BT.601."""
    name, _, tags = pix_fmt.partition("(")
    # each tag is one name, or matrix/primaries/transfer ("unknown/bt709/bt709": no matrix)
    named = {t.strip().split("/")[0] for t in tags.rstrip(")").split(",")}
    if not name.startswith(("yuv", "nv")) or _MATRICES & named:
        return ""
    w, h = size
    return "bt709" if w >= 1280 or h > 576 else ""


def _count_frames(path: Path, limit: int | None = None,
                  timeline: Sequence[str] = ("setpts=PTS-STARTPTS",),
                  seeking: Sequence[str] = ()) -> Count:
    """Decode the first video stream (or its first `limit` frames) to nowhere: the frame count,
    their length, timed from the first picture (where the sound starts earlier, the file's own
    clock adds the gap), and whether the file is cut short (an MP4's or a MOV's index lists
    frames past its end). The limit matters: `--max-frames 24` of a two-minute 1080p clip
    waited 11 s for this on 2 cores, of an hour-long film minutes. With a limit, the length is
    where the next frame starts: ffmpeg's end time for a clip cut short is wrong for MKV and TS
    with variable frame rate (0.04 s for frames lasting 0.08 s). timeline: _timeline's filters;
    seeking: input options (-ss)."""
    filters, cap = list(timeline), []
    if limit is not None:
        filters, cap = filters + ["showinfo"], ["-frames:v", str(limit + 1)]
    code, log = _decode(path, seeking, ["-vf", ",".join(filters), *cap])
    if code != 0:
        raise RuntimeError(log)
    frames = re.findall(r"frame=\s*(\d+)", log)
    n = int(frames[-1]) if frames else 0
    short = bool(re.search(r"offset 0x[0-9a-f]+: partial file", log))
    if limit is not None and n > limit:
        starts = dict(re.findall(r"\bn:\s*(\d+)\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.]+)", log))
        if str(limit) in starts:
            return Count(limit, float(starts[str(limit)]), short)
    times = re.findall(r"time=\s*(\d+):(\d+):([\d.]+)", log)
    h, m, s = times[-1] if times else (0, 0, 0)
    return Count(n, int(h) * 3600 + int(m) * 60 + float(s), short)


def _video_frames(source: Source) -> Iterator[np.ndarray]:
    # passthrough: every coded frame once, as _count_frames counts them (no CFR dup/drop but
    # the fps filter's, for --fps).
    params = ["-map", "0:v:0", "-fps_mode", "passthrough"]
    # woven fields comb wherever something moves, and the painting would keep the combs: one
    # frame from each frame (the count and the times stay), only those flagged interlaced
    filters = ["bwdif=mode=send_frame:deint=interlaced"] if source.interlaced else []
    filters += [f"setparams=colorspace={source.matrix}"] if source.matrix else []
    filters += _timeline(source.resample, source.seek, source.until, source.seeks)  # as counted
    if source.start:  # a window: ffmpeg drops the frames before it (decoded, never piped to us)
        filters.append(f"select=gte(n\\,{source.start})")
    if filters:
        params += ["-vf", ",".join(filters)]
    seeking = ["-ss", f"{source.start_time:.6f}"] if source.seeks else []
    reader = imageio_ffmpeg.read_frames(str(source.path), input_params=seeking,
                                        output_params=params)
    try:
        w, h = _decode_step(source, reader)["size"]
        for i in range(source.n_frames):
            data = _decode_step(source, reader)
            if data is None:
                raise VStyleError(f"video {source.path} ended after {i} of {source.n_frames} frames: "
                                  f"re-export it or pass {opt('max_frames')}")
            yield np.frombuffer(data, np.uint8).reshape(h, w, 3).copy()
    finally:
        reader.close()  # stops ffmpeg when the caller quits early


def _resampled(rate: str) -> list[str]:
    """ffmpeg's fps filter: output frame k is the source frame on screen at time k / rate (with
    round=up; its default takes the last frame up to half an output frame after that time)."""
    return [f"fps={rate}:round=up"] if rate else []


def _decode_step(source: Source, reader: Iterator):
    try:
        return next(reader, None)
    except Exception as error:  # ffmpeg died mid-file
        raise _unreadable_video(source.path, error) from None


# files that may hold an animation, and what to call them in messages
ANIMATED = {".gif": "GIF", ".webp": "WebP", ".png": "APNG", ".apng": "APNG"}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_animated(path: Path) -> bool:
    """Whether a WebP or PNG holds an animation, from its first chunks only (a batch asks this
    of every file in a folder of frames). A file that is not what its name says is no
    animation: reading it as an image then says what is wrong."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X":  # extended WebP
                return bool(head[20] & 0x02)  # its animation flag
            if head[:8] != PNG_SIGNATURE:
                return False
            f.seek(8)
            while len(header := f.read(8)) == 8:  # the chunks before the image data
                size, chunk = int.from_bytes(header[:4], "big"), header[4:]
                if chunk == b"acTL":  # animation control: frames, plays
                    return int.from_bytes(f.read(4), "big") > 1
                if chunk in (b"IDAT", b"IEND"):
                    return False
                f.seek(size + 4, 1)  # data and CRC
    except OSError:
        return False
    return False


def _animation_info(path: Path) -> tuple[int, list[int], int, int]:
    """(n_frames, durations_ms, loop, first): from the file's blocks, nothing decoded. `first`
    is Pillow's index of frame 1 (an APNG may carry a still image before its animation)."""
    name = ANIMATED[path.suffix.lower()]
    if name == "GIF":
        return (*gif_info(path)[:3], 0)
    return (*webp_info(path), 0) if name == "WebP" else apng_info(path)


def _open_animation(path: Path, fps: float | None = None) -> Source:
    """A GIF, an animated WebP or an APNG: its frames' durations and loop flag."""
    name = ANIMATED[path.suffix.lower()]
    try:
        n, durations, loop, first = _animation_info(path)
        with Image.open(path) as image:
            size = image.size
    except (OSError, ValueError) as error:
        raise VStyleError(f"{path} is not a readable {name} ({_brief(error)}): "
                          "re-export it, or pass a video") from None
    if n == 0:
        raise VStyleError(f"{name} {path} has no frames: re-export it")
    # Browsers play delays of 0 and 10 ms at 100 ms; keep the clip's look as people know it.
    durations = [d if d > 10 else 100 for d in durations]
    shown = gif_picks(durations, fps) if fps else range(n)
    picks = [first + i for i in shown] if fps or first else None
    timing = Timing(fps, None, loop) if fps else \
        Timing(1000 * n / sum(durations), durations, loop)
    return Source(path, "animation", len(shown), size, timing, False, picks=picks)


# An animation's frames start on its format's clock (a GIF's: 10 ms), rounded: at 24 fps a
# frame meant for 125 ms starts at 130. Looked up by time, a frame counts as started this
# much early, or such a clip resampled at its own rate would repeat some frames and drop others.
START_SLACK_MS = 5.0


def gif_picks(durations_ms: list[int], fps: float) -> list[int]:
    """The frame on screen at each time k / fps over an animation's length (frames repeat where
    the rate is above the animation's, or where a frame holds)."""
    starts = list(accumulate(durations_ms, initial=0))[:-1]
    n = max(1, round(sum(durations_ms) * fps / 1000))
    return [bisect_right(starts, 1000 * k / fps + START_SLACK_MS) - 1 for k in range(n)]


def _animation_frames(source: Source) -> Iterator[np.ndarray]:
    try:
        frames = source.picks or range(source.start + source.n_frames)
        with Image.open(source.path) as image:
            for i in frames[source.start: source.start + source.n_frames]:
                image.seek(i)  # Pillow composites each frame onto the previous ones
                yield _to_rgb(image)
    except (OSError, ValueError, EOFError) as error:
        raise VStyleError(f"{source.path} is damaged ({_brief(error)}): re-export it") from None


# --- the GIF block structure ---------------------------------------------------------------------

def _gif_blocks(data: bytes) -> Iterator[tuple[str, int, int]]:
    """Walk a GIF: yield (kind, start, end) for "head" (header + screen + global table), "gce",
    "netscape", "ext" (other extensions), "image" (descriptor + local table + LZW data)."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        raise ValueError("no GIF header")
    pos = 13 + _table_size(data[10])
    yield "head", 0, pos
    while pos < len(data) and data[pos] != 0x3B:  # 0x3B: trailer
        start = pos
        if data[pos] == 0x21 and pos + 2 < len(data):  # extension: label, then sub-blocks
            label, pos = data[pos + 1], _skip_sub_blocks(data, pos + 2)
            app_id = data[start + 3: start + 14]
            kind = {0xF9: "gce"}.get(label, "netscape" if label == 0xFF and app_id in
                                     (b"NETSCAPE2.0", b"ANIMEXTS1.0") else "ext")
        elif data[pos] == 0x2C and pos + 10 < len(data):  # image: descriptor, local table,
            pos += 10 + _table_size(data[pos + 9])        # LZW code size, sub-blocks
            pos, kind = _skip_sub_blocks(data, pos + 1), "image"
        elif data[pos] in (0x21, 0x2C):
            return  # truncated inside a block header
        else:
            pos += 1  # a stray byte between blocks: skip it, as Pillow and browsers do
            continue
        if pos > len(data):
            return  # truncated: a partial block is not a frame
        yield kind, start, pos


def _table_size(packed: int) -> int:
    """Bytes of the colour table a screen or image descriptor's packed field announces."""
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos]:
        pos += data[pos] + 1
    return pos + 1


def gif_info(path: str | Path) -> tuple[int, list[int], int, bool]:
    """(n_frames, durations_ms, loop, has_local_color_tables) read from the blocks, not decoded.
    loop follows ffmpeg's -loop: 0 = forever, -1 = no loop block (plays once)."""
    data = Path(path).read_bytes()
    durations, delay, loop, local = [], 0, -1, False
    for kind, start, end in _gif_blocks(data):
        if kind == "gce":
            delay = 10 * int.from_bytes(data[start + 4: start + 6], "little")
        elif kind == "netscape" and end - start >= 19:
            loop = int.from_bytes(data[start + 16: start + 18], "little")
        elif kind == "image":
            local |= bool(data[start + 9] & 0x80)
            durations.append(delay)
            delay = 0  # a GCE covers only the next image
    return len(durations), durations, loop, local


def _webp_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """A WebP's top-level chunks: (name, where its body starts, its size)."""
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        yield data[pos:pos + 4], pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even size


def webp_info(path: str | Path) -> tuple[int, list[int], int]:
    """(n_frames, durations_ms, loop) of a WebP, read from its RIFF chunks, not decoded. loop
    as for a GIF (ffmpeg's -loop: 0 = forever, -1 = plays once); WebP counts plays (0 =
    forever), a GIF's loop block repeats. A still WebP is one frame."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("no WebP header")
    durations, plays = [], 0
    for chunk, body, size in _webp_chunks(data):
        if chunk == b"ANIM" and size >= 6:
            plays = int.from_bytes(data[body + 4:body + 6], "little")
        elif chunk == b"ANMF" and size >= 16:
            durations.append(int.from_bytes(data[body + 12:body + 15], "little"))
    if not durations:  # a still: one image chunk
        return 1, [0], -1
    return len(durations), durations, _repeats(plays)


def apng_info(path: str | Path) -> tuple[int, list[int], int, int]:
    """(n_frames, durations_ms, loop, first) of a PNG, read from its chunks, not decoded; loop
    as for a GIF (APNG counts plays, like WebP). `first` is 1 where the file's still image
    (IDAT before the first frame control) is not part of the animation, which Pillow counts as
    frame 0 and browsers do not show. A plain PNG is one frame."""
    data = Path(path).read_bytes()
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("no PNG signature")
    durations, plays, first, pos = [], None, 0, 8
    while pos + 8 <= len(data):
        size, chunk = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + size]
        if chunk == b"acTL" and size >= 8:
            plays = int.from_bytes(body[4:8], "big")
        elif chunk == b"fcTL" and size >= 26:
            num, den = int.from_bytes(body[20:22], "big"), int.from_bytes(body[22:24], "big")
            durations.append(round(1000 * num / (den or 100)))  # a 0 denominator means 1/100 s
        elif chunk == b"IDAT" and plays is not None and not durations:
            first = 1
        pos += 12 + size  # length, type, data, CRC
    if plays is None or not durations:
        return 1, [0], -1, 0
    return len(durations), durations, _repeats(plays), first


def _repeats(plays: int) -> int:
    """A play count (WebP, APNG: 0 = forever) as a GIF's loop flag (ffmpeg's -loop: 0 =
    forever, -1 = plays once, N = N repeats, at most 65535)."""
    return -1 if plays == 1 else min(max(plays - 1, 0), 65535)


def _delays(timing: Timing, n: int, tick_ms: int) -> list[int]:
    """Per-frame delays in ticks of tick_ms whose running total follows the exact clock (4, 4,
    5 cs at 24 fps)."""
    given = timing.durations_ms or []
    ends_ms, t = [], 0.0
    for i in range(n):
        t += given[i] if i < len(given) else 1000 / timing.fps
        ends_ms.append(t)
    ticks = [0] + [math.floor(ms / tick_ms + 0.5) for ms in ends_ms]
    return [b - a for a, b in zip(ticks, ticks[1:])]


def _gif_delays(timing: Timing, n: int) -> list[int]:
    """A GIF's delays, in centiseconds."""
    delays = _delays(timing, n, 10)
    if min(delays) < 2:
        warn("GIF frames shorter than 20 ms play at 100 ms in browsers, so they are set "
             f"to 20 ms and the GIF runs slow: pass {opt('fps', 50)} or less, or write .webp "
             "or .mp4")
    return [max(2, d) for d in delays]


def _retime_gif(data: bytes, delays: list[int], loop: int) -> bytearray:
    """Set each frame's delay and the loop block; every image gets a GCE of its own."""
    out, gce, frame = bytearray(), None, 0
    for kind, start, end in _gif_blocks(data):
        block = bytearray(data[start:end])
        if kind == "head":
            out += block
            if loop >= 0:  # right after the global table, where players look for it
                out += b"\x21\xFF\x0BNETSCAPE2.0\x03\x01" + loop.to_bytes(2, "little") + b"\x00"
        elif kind == "gce":
            gce = block
        elif kind == "image":
            gce = gce or bytearray(b"\x21\xF9\x04\x00\x00\x00\x00\x00")
            gce[4:6] = delays[frame].to_bytes(2, "little")
            out += gce + block
            gce, frame = None, frame + 1
        elif kind == "ext":
            out += block
    if frame != len(delays):
        raise RuntimeError(f"ffmpeg wrote {frame} GIF frames for {len(delays)} input frames")
    out += b"\x3B"  # trailer
    return out


# --- output paths --------------------------------------------------------------------------------

def output_kind(path: Path) -> str:
    """"gif" | "mp4" | "webp" | "image" | "folder" (an existing folder, or a name without
    extension)."""
    path = Path(path)
    kind = OUTPUT_EXTS.get(path.suffix.lower())
    if path.is_dir() and kind:  # out.gif/, made by hand: which did the user mean?
        raise VStyleError(f"output {path} is a folder, yet its name ends in {path.suffix}: "
                          f"move the folder away to write a {path.suffix[1:].upper()} "
                          "there, or name a folder without extension for PNG frames")
    if path.is_dir() or not path.suffix:
        return "folder"
    if kind is None:
        raise VStyleError(f"output {path}: {path.suffix} is not supported: use .gif, .mp4, "
                          ".webp, .png, .jpg or a folder name without extension")
    return kind


def default_output(source: Source, style_paths: list[Path]) -> Path:
    """<input>-<style> beside the input, in the input's kind."""
    return output_name(source.path, source.kind, style_paths, source.path.parent)


def output_name(path: Path, kind: str, style_paths: list[Path], folder: Path) -> Path:
    """folder/<input>-<style>, in the input's kind: a video -> .mp4, a GIF or WebP -> the same,
    a folder -> a folder, another image -> .png."""
    stem = path.name if kind == "folder" else path.stem
    styles = "+".join(Path(p).stem for p in style_paths) or "stylized"
    if kind in ("video", "folder"):
        suffix = ".mp4" if kind == "video" else ""
    elif path.suffix.lower() in (".gif", ".webp"):  # formats vstyle writes: kept
        suffix = path.suffix.lower()
    else:  # an APNG, a JPEG...
        suffix = ".gif" if kind == "animation" else ".png"
    return folder / f"{stem}-{styles}{suffix}"


def check_output(output: Path, source: Source, style_paths: Sequence[Path] = (),
                 frame_size: tuple[int, int] | None = None) -> str:
    """Refuse an output that would fail at the end of a long run, or overwrite the input or a
    style image; return its kind. frame_size: the written frames' (w, h), where known."""
    output = Path(output)
    kind = output_kind(output)
    if kind == "image" and source.n_frames > 1:
        raise VStyleError(f"output {output} is a still image but the input has {source.n_frames} "
                          "frames: write .gif, .webp, .mp4 or a folder (or add "
                          f"{opt('max_frames', 1)} to try the look on the first frame)")
    longest = max(source.timing.durations_ms or [1000 / source.timing.fps])
    if kind in FRAME_MAX_MS and longest > FRAME_MAX_MS[kind]:
        raise VStyleError(f"output {output}: a frame lasts {longest / 1000:g} s, longer than a "
                          f"{kind.upper()} frame can ({FRAME_MAX_MS[kind] / 1000:g} s): write "
                          f"{'.webp or ' if kind == 'gif' else ''}.mp4, or raise {opt('fps')}")
    if kind == "webp" and frame_size and not _ffmpeg_writes_webp() and \
            source.n_frames * frame_size[0] * frame_size[1] * 4 > WEBP_MAX_BYTES:
        raise VStyleError(f"output {output}: {source.n_frames} frames at {frame_size[0]}x"
                          f"{frame_size[1]} are too many for a WebP encoded in memory (this "
                          f"ffmpeg has no libwebp to stream it): write .mp4, or make it shorter "
                          f"with {opt('max_frames')} or {opt('fps')}")
    check_not_overwriting(output, "output", source, style_paths)
    if kind == "folder":
        _check_folder_target(output)
    check_writable(output, "output folder")
    return kind


def check_writable(path: Path, what: str) -> None:
    """Refuse a file that cannot be written at `path`: found before a long run, not after it.
    A missing folder is not made here (a later check may still refuse the run), only its
    nearest existing parent is tried. `what`: the folder, as the fix names it."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise VStyleError(f"cannot write to {path.parent} ({_brief(error)}): choose a writable "
                          f"{what}") from None


def check_not_overwriting(path: Path, name: str, source: Source,
                          style_paths: Sequence[Path] = ()) -> None:
    """A file vstyle writes (the output, the report) must not be one it reads."""
    # a folder's frames only where the path is in that folder (thousands of them)
    frames = source.files if Path(path).resolve().parent == source.path.resolve() else []
    for other, what in [(source.path, "the input"), *((p, "a style image") for p in style_paths),
                        *((p, "one of the input's frames") for p in frames)]:
        if Path(path).resolve() == Path(other).resolve():
            raise VStyleError(f"{name} {path} is {what} itself: choose another {name} name")


# what file managers leave in a folder that was opened: no one's work
_LITTER = {".DS_Store", "Thumbs.db", "desktop.ini"}


def _check_folder_target(folder: Path) -> None:
    """Replace only an empty folder, or one that vstyle wrote and that holds nothing else."""
    if folder.exists() and not folder.is_dir():
        raise VStyleError(f"output {folder} is a file: choose a folder name")
    names = {p.name for p in folder.iterdir()} - _LITTER if folder.is_dir() else set()
    others = sorted(n for n in names if not _FRAME_NAME.fullmatch(n) and n != FOLDER_MARK)
    if FOLDER_MARK in names and others:
        raise VStyleError(f"output folder {folder} holds files besides vstyle's frames "
                          f"({some_names([folder / n for n in others])}): move them out, or "
                          "choose a new folder")
    if FOLDER_MARK not in names and names and not others:
        raise VStyleError(f"output folder {folder} holds frames without vstyle's {FOLDER_MARK} "
                          "file (someone's own, or an older vstyle's): delete them, or choose a "
                          "new folder")
    if others:
        raise VStyleError(f"output folder {folder} is not empty: choose a new folder, or empty "
                          "this one")


def written_frames(folder: Path) -> list[Path]:
    """The frames in a folder that vstyle wrote, in order (00001.png ... 100000.png)."""
    return sorted((p for p in folder.iterdir() if _FRAME_NAME.fullmatch(p.name)),
                  key=lambda p: int(p.stem))


# --- encoding ------------------------------------------------------------------------------------

@contextmanager
def _scratch(target: Path, suffix: str) -> Iterator[Path]:
    """A hidden name beside target, removed whatever happens (a no-op once renamed into place)."""
    path = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}{suffix}"
    try:
        yield path
    finally:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def _first(frames: Iterable[np.ndarray], even: bool = False) -> tuple[tuple[int, int], Iterator]:
    """Peek at the first frame for the size; check every frame; crop to even sides for H.264."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("write_output got no frames")
    shape = first.shape
    h, w = (shape[0] - shape[0] % 2, shape[1] - shape[1] % 2) if even else shape[:2]

    def checked() -> Iterator[np.ndarray]:
        for frame in chain([first], it):
            if frame.dtype != np.uint8 or frame.shape != shape or shape[2:] != (3,):
                raise ValueError(f"frames must all be RGB uint8 {shape}, got {frame.dtype} {frame.shape}")
            yield np.ascontiguousarray(frame[:h, :w])
    return (w, h), checked()


def _counted(frames: Iterable[np.ndarray], count: list[int]) -> Iterator[np.ndarray]:
    """Pass frames through, counting them into count[0] (the length is known only at the end)."""
    for frame in frames:
        count[0] += 1
        yield frame


def _raw_input(size: tuple[int, int], fps: float) -> list[str]:
    rate = str(Fraction(fps).limit_denominator())  # exact for 24000/1001 and friends
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-r", rate, "-i", "-"]


def _paced(timing: Timing, container: str) -> tuple[float, list[str], list[str]]:
    """The raw input's rate, and the filters and output options that give each frame of an MP4
    or a WebP its own duration (none where the frames are uniform).

    Uniform frames: just the rate. A GIF whose durations vary (a pause at each end of a swing)
    would otherwise play at its average rate: each frame's timestamp is then set to the sum of
    the durations before it, on a millisecond clock, and the input rate is 1000 / the last
    duration because the last frame lasts one input period."""
    d = timing.durations_ms
    if not d or len(set(d)) == 1:
        return timing.fps, [], []
    base = max(set(d), key=d.count)  # written out only where a frame differs from it
    starts = f"{base}*N" + "".join(f"{x - base:+d}*gt(N,{j})" for j, x in enumerate(d[:-1])
                                   if x != base)
    if len(starts) > 30_000:  # thousands of uneven frames: past Windows' command-line limit
        warn(f"the GIF's frames have too many different durations to keep in {container}: "
             "it plays at their average rate")
        return timing.fps, [], []
    return 1000 / d[-1], ["settb=1/1000", f"setpts='{starts}'"], [
        "-fps_mode", "passthrough", "-enc_time_base", "1:1000"]


def _ffmpeg(args: list[str], frames: Iterable[np.ndarray] | None = None) -> None:
    """Run ffmpeg, streaming raw frames into its stdin; a failure is an OSError with its reason."""
    # Own session: Ctrl-C reaches Python, which then stops ffmpeg itself (no half-written mess).
    detach = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args],
                                stdin=subprocess.PIPE if frames is not None else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, **detach)
        try:
            if frames is not None:
                _feed(proc.stdin, frames)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the frames failed, or Ctrl-C: stop ffmpeg now
                proc.kill()
                proc.wait()
            with suppress(OSError):
                proc.stdin and proc.stdin.close()
        if code != 0:
            log.seek(0)
            reason = _brief(log.read().decode(errors="replace")) or f"exit code {code}"
            raise OSError(f"ffmpeg: {reason}")  # write_output names the file and the fix


def _feed(pipe, frames: Iterable[np.ndarray]) -> None:
    try:
        for frame in frames:
            pipe.write(memoryview(frame).cast("B"))
        pipe.close()  # end of input: ffmpeg finishes the file
    except BrokenPipeError:
        pass  # ffmpeg quit early; its exit code and log say why


def _write_gif(frames: Callable[[], Iterable[np.ndarray]], out: Path, timing: Timing,
               dither: str) -> None:
    if dither not in GIF_DITHER:
        raise VStyleError(f"GIF dither {dither!r} is unknown: use one of {', '.join(GIF_DITHER)}")
    with _scratch(out, ".palette.png") as palette:
        # Pass 1: one palette for the whole clip, from what changes between frames.
        size, it = _first(frames())
        _ffmpeg([*_raw_input(size, timing.fps), "-vf", "palettegen=stats_mode=diff",
                 "-frames:v", "1", "-update", "1", str(palette)], it)
        # Pass 2: map every frame to it; passthrough keeps repeated frames (one in, one out).
        size, it = _first(frames())
        count = [0]
        _ffmpeg([*_raw_input(size, timing.fps), "-i", str(palette), "-filter_complex",
                 f"[0:v][1:v]paletteuse=dither={GIF_DITHER[dither]}:diff_mode=rectangle",
                 "-pix_fmt", "pal8", "-fps_mode", "passthrough", "-loop", str(timing.loop),
                 "-f", "gif", str(out)], _counted(it, count))
    # ffmpeg rounds each delay on its own; set them so the total is exact.
    out.write_bytes(_retime_gif(out.read_bytes(), _gif_delays(timing, count[0]), timing.loop))


@lru_cache(maxsize=None)
def _ffmpeg_writes_webp() -> bool:
    """Whether ffmpeg has libwebp's animation encoder (imageio-ffmpeg's own build has)."""
    listing = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"],
                             capture_output=True, text=True, errors="replace")
    return "libwebp_anim" in listing.stdout


def _write_webp(frames: Callable[[], Iterable[np.ndarray]], out: Path, timing: Timing) -> None:
    """Animated WebP: full colour where a GIF has 256, a fraction of its size at the same
    look, and shown by every current browser. Each frame keeps its duration (ms), and the loop
    flag carries over: WebP counts plays (0: forever), a GIF's loop block repeats."""
    size, it = _first(frames())
    head = list(islice(it, 2))  # one frame, or more
    it = chain(head, it)
    # _repeats' inverse; WebP counts plays in 16 bits
    plays = 1 if timing.loop < 0 else min(timing.loop + (timing.loop > 0), 65535)
    count = [0]
    if len(head) == 1 or not _ffmpeg_writes_webp():  # a still stays a still: Pillow writes it
        images = [Image.fromarray(frame) for frame in _counted(it, count)]
        images[0].save(out, format="WEBP", save_all=True, append_images=images[1:],
                       duration=_delays(timing, len(images), 1), loop=plays,
                       quality=WEBP_QUALITY, method=4)
    else:
        rate, pacing, paced = _paced(timing, "a WebP")
        _ffmpeg([*_raw_input(size, rate), *(["-vf", ",".join(pacing)] if pacing else []),
                 *paced, "-c:v", "libwebp_anim", "-quality", str(WEBP_QUALITY),
                 "-compression_level", "4", "-loop", str(plays), "-f", "webp", str(out)],
                _counted(it, count))
    if count[0] > 1:  # the last frame's duration from the total (ffmpeg guesses: 77 ms for 1 s)
        total_ms = sum(_delays(timing, count[0], 1))
        out.write_bytes(_last_webp_frame_ends(out.read_bytes(), size, total_ms, plays))


def _last_webp_frame_ends(data: bytes, size: tuple[int, int], total_ms: int,
                          plays: int) -> bytes:
    """The WebP with its last frame lasting to total_ms. libwebp stores a repeated frame once,
    with the durations added, so only the sum of the frames before the last is known; frames
    all alike come out as a still image, which is made a one-frame animation of them all."""
    frames = [body + 12 for chunk, body, length in _webp_chunks(data)  # 24-bit durations
              if chunk == b"ANMF" and length >= 16]
    if not frames:
        return _one_frame_animation(data, size, min(total_ms, FRAME_MAX_MS["webp"]), plays)
    before = sum(int.from_bytes(data[at:at + 3], "little") for at in frames[:-1])
    last = min(max(total_ms - before, 1), FRAME_MAX_MS["webp"])
    return data[:frames[-1]] + last.to_bytes(3, "little") + data[frames[-1] + 3:]


def _one_frame_animation(still: bytes, size: tuple[int, int], duration_ms: int,
                         plays: int) -> bytes:
    """A still WebP's picture as an animated WebP's one frame (VP8X, ANIM, ANMF chunks)."""
    def chunk(name: bytes, body: bytes) -> bytes:
        return name + len(body).to_bytes(4, "little") + body + b"\0" * (len(body) & 1)

    def u24(n: int) -> bytes:
        return n.to_bytes(3, "little")
    picture = b"".join(still[body - 8:body + length + (length & 1)]  # as they are, headed
                       for name, body, length in _webp_chunks(still)
                       if name in (b"ALPH", b"VP8 ", b"VP8L"))
    w, h = size
    alpha = 0x10 if b"ALPH" in picture[:4] else 0
    body = (chunk(b"VP8X", bytes([0x02 | alpha, 0, 0, 0]) + u24(w - 1) + u24(h - 1)) +
            chunk(b"ANIM", bytes(4) + plays.to_bytes(2, "little")) +
            chunk(b"ANMF", u24(0) + u24(0) + u24(w - 1) + u24(h - 1) + u24(duration_ms) +
                  bytes(1) + picture))
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body


def _audio_codec(path: Path) -> str | None:
    """The first audio stream's codec, from ffmpeg's description of the file."""
    match = re.search(r"Audio: (\w+)", _description(path))
    return match.group(1) if match else None


def _write_mp4(frames: Callable[[], Iterable[np.ndarray]], out: Path, timing: Timing,
               audio_from: Path | None, audio_seek: float, crf: int) -> None:
    size, it = _first(frames(), even=True)  # yuv420p needs even sides: drop a column/row
    count = [0]
    counted = _counted(it, count)
    rate, pacing, paced = _paced(timing, "an MP4")
    if paced:  # -bf 0: with B-frames x264 hands durations out in decode order, and the last
        # frame's, which sets the clip's length, came out as another's (0.46 s for 0.36 s)
        paced += ["-video_track_timescale", "1000", "-bf", "0"]
    # RGB to BT.709 YUV, and tagged so: untagged, ffmpeg converts with BT.601, and browsers and
    # players guess BT.709 for HD sizes (a red of 200, 30, 30 shows as 213, 46, 28).
    filters = [*pacing, "scale=out_color_matrix=bt709:out_range=tv", "format=yuv420p",
               "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"]
    video = [*_raw_input(size, rate), "-vf", ",".join(filters), *paced, "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "-crf", str(crf), "-preset", "medium"]
    if audio_from is None:
        _ffmpeg([*video, "-movflags", "+faststart", "-f", "mp4", str(out)], counted)
        return
    # The length is known only at the end of the stream, so the audio is muxed in a second
    # pass, cut with -t (not -shortest, which drops video frames of a short track).
    with _scratch(out, ".video.mp4") as silent:
        _ffmpeg([*video, "-f", "mp4", str(silent)], counted)
        # A sound cut to frame 1 (--start, or pictures that start after it) is decoded: copied,
        # it would start at the packet before, with negative times (where that was past its
        # end, an MP4 claiming 6.8 s for 0.1 s)
        seek = ["-ss", f"{audio_seek:.6f}"] if audio_seek else []
        copy = not audio_seek and _audio_codec(audio_from) in MP4_AUDIO_COPY
        _ffmpeg(["-i", str(silent), *seek, "-i", str(audio_from), "-map", "0:v:0", "-map", "1:a:0?",
                 "-c:v", "copy", "-c:a", "copy" if copy else "aac",
                 "-t", f"{timing.seconds(count[0]):.6f}", "-movflags", "+faststart", "-f", "mp4",
                 str(out)])


def png_bytes(frame: np.ndarray) -> bytes:
    """An RGB frame as PNG, at a low compression level: fast, still lossless."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("PNG encoding failed")
    return data.tobytes()


def _write_folder(frames: Callable[[], Iterable[np.ndarray]], out: Path) -> None:
    _check_folder_target(out)
    with _scratch(out, "") as tmp:
        tmp.mkdir()
        for i, frame in enumerate(frames(), start=1):
            (tmp / f"{i:05d}.png").write_bytes(png_bytes(frame))
        (tmp / FOLDER_MARK).write_text("frames written by vstyle: a later run may replace "
                                       "this folder whole\n")
        if out.exists():  # an earlier run of ours: swap it out, then delete it
            _check_folder_target(out)
            with _scratch(out, ".old") as old:
                os.replace(out, old)
                os.replace(tmp, out)
        else:
            os.replace(tmp, out)


def _write_image(frames: Callable[[], Iterable[np.ndarray]], out: Path) -> None:
    it = iter(frames())
    first = next(it)
    getattr(it, "close", lambda: None)()  # release the decoder of the frames we skip
    params = ([cv2.IMWRITE_PNG_COMPRESSION, 6] if out.suffix.lower() == ".png"
              else [cv2.IMWRITE_JPEG_QUALITY, 95])
    _, data = cv2.imencode(out.suffix, cv2.cvtColor(first, cv2.COLOR_RGB2BGR), params)
    out.write_bytes(data.tobytes())


def write_output(frames: Callable[[], Iterable[np.ndarray]], output: Path, kind: str,
                 timing: Timing, *, audio_from: Path | None = None, audio_seek: float = 0.0,
                 crf: int = 18, gif_dither: str = "bayer") -> None:
    """Encode frames into output, atomically: nothing appears there unless all of it worked.

    frames is a zero-argument callable returning a fresh iterable of RGB uint8 (H, W, 3) frames
    (a list is accepted too): a GIF reads them twice, once for its one palette and once to map
    them, so that memory stays flat. kind is check_output's answer; audio_from (video sources
    with audio only) is muxed into an mp4, from audio_seek seconds in (--start), and cut to
    the video's length.
    """
    output = Path(output)
    if not callable(frames):
        if iter(frames) is frames:
            raise TypeError("frames must be a list or a callable returning fresh frames, not an iterator")
        items = frames
        frames = lambda: items  # noqa: E731 - a list can be read twice as it is
    output.parent.mkdir(parents=True, exist_ok=True)  # check_output made no folder
    try:
        if kind == "folder":
            _write_folder(frames, output)
            return
        with _scratch(output, output.suffix) as tmp:
            if kind == "gif":
                _write_gif(frames, tmp, timing, gif_dither)
            elif kind == "mp4":
                _write_mp4(frames, tmp, timing, audio_from, audio_seek, crf)
            elif kind == "webp":
                _write_webp(frames, tmp, timing)
            elif kind == "image":
                _write_image(frames, tmp)
            else:
                raise ValueError(f"unknown output kind {kind!r}")
            os.replace(tmp, output)
    except OSError as error:  # disk full, permissions, a vanished folder
        raise VStyleError(f"could not write {output} ({_brief(error)}): check free disk space "
                          "and that the folder is writable") from None
    if kind == "gif" and output.stat().st_size > LARGE_GIF_BYTES:
        warn(f"{output} is {output.stat().st_size / 2**20:.0f} MB, too large to share "
             "easily: write .webp (smaller, full colour) or .mp4, or shrink it with "
             f"{opt('size')} or {opt('fps')}")
