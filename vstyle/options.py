"""The options of a run: the one home of every default, shared by the library and the CLI."""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .errors import VStyleError, listed, opt, warn

STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
CONTENT_LAYERS = ("conv4_2",)
# VGG19's first block keeps four 64-channel maps per pixel for the backward pass, ~1 KB a
# pixel in fp32: tens of GB at 8192 px. Far larger only fails after minutes, or is killed by
# the system without a word.
MAX_SIZE = 8192
MAX_FPS = 1000.0
MAX_WEIGHT = 1e30  # a loss weight; float32 overflows at 3.4e38


def seconds(value: str | float | None, name: str) -> float | None:
    """A time as seconds: 90, 90.5, "1:30" or "0:01:30.5" (as ffmpeg takes them)."""
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        parts = [float(p) for p in str(value).strip().split(":")]
        if len(parts) > 3 or any(p < 0 for p in parts) or any(p >= 60 for p in parts[1:]):
            raise ValueError
    except ValueError:
        raise VStyleError(f"{opt(name, str(value))} is not a time: pass seconds (90, 7.5) or "
                          "[HH:]MM:SS (1:30, 0:01:30.5)") from None
    return sum(p * 60 ** k for k, p in enumerate(reversed(parts)))


# Python callers' values of the wrong type: a string for a number would fail deep inside with
# a TypeError, a string for an on/off option would be taken as on ("no" is true).
_SCALARS = {"int": int, "int | None": int, "float": float, "float | None": float, "bool": bool,
            "str": str}


def _scalar(name: str, value, annotation: str):
    """value as the type the option's annotation names (numpy's numbers as Python's)."""
    kind = _SCALARS[annotation]
    if value is None and annotation.endswith("None"):
        return None
    if kind is bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if kind is str and isinstance(value, (str, os.PathLike)):
        return os.fspath(value)  # weights=Path(...)
    if kind in (int, float) and isinstance(value, numbers.Real) and \
            not isinstance(value, (bool, np.bool_)):
        if kind is int and isinstance(value, numbers.Integral):
            return int(value)  # of any size: validate says how large it may be
        try:
            if kind is float:
                return float(value)
            if float(value).is_integer():  # 32.0 is 32
                return int(value)
        except OverflowError:
            raise VStyleError(f"{name}={value!r}: too large") from None
    wanted = {int: "a whole number", float: "a number", bool: "True or False",
              str: "a string"}[kind]
    raise VStyleError(f"{name}={value!r}: pass {wanted}")


def default_weights() -> str:
    """`VSTYLE_WEIGHTS` lets scripts and CI pick the weights without a flag."""
    return os.environ.get("VSTYLE_WEIGHTS", "").strip() or "imagenet"


@dataclass
class Options:
    """Every option of a run, with its default. The command's options are these fields
    (--style-weight is style_weight; the README's option table says what each does). Make one
    with keywords, Options(size=256); derive one with .replace(iterations=50); .validate()
    refuses values out of range, in one line each."""
    # --- size ---------------------------------------------------------------------------------
    size: int = 512  # long side of the processed (and output) frames, px
    style_size: int | None = None  # long side of the style image(s); None: size * style_scale
    style_scale: float = 1.0  # style image size relative to the frames (when style_size is None)

    # --- loss ---------------------------------------------------------------------------------
    # Content and style terms are divided by the first frame's starting loss, so only the ratio
    # content_weight : style_weight matters (see optimize.Objective). 1 : 1e3 comes from the
    # PyTorch tutorial's 1 : 1e6 on the same torchvision VGG19, converted to our 1/(4 N^2 M^2)
    # Gram normalization (its per-layer 1/N^4 is ours times 4/N^2; summed over our five layers
    # that is ~1.3e3), rounded down because our content layer conv4_2 constrains less than its
    # conv2_2.
    content_weight: float = 1.0
    style_weight: float = 1e3
    # Pixel-space terms (mean over pixels, images in [0, 1]), added after that normalization.
    tv_weight: float = 1.0
    # With flow warm starts (bench/temporal.py, random VGG19, strong style): 10 cut the warping
    # error ~60x below `none` while leaving the style loss within 2x of no temporal term; 100
    # cut it further but held the style back more.
    temporal_weight: float = 10.0
    temporal_frames: tuple[int, ...] = (1,)  # frames back the temporal loss holds; 1,2,4: long-term
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: 1 for every style layer
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    pooling: str = "max"  # max | avg
    preserve_colors: bool = False

    # --- optimizer ----------------------------------------------------------------------------
    optimizer: str = "lbfgs"  # lbfgs | adam
    lr: float | None = None  # None: 1.0 for L-BFGS, 0.02 for Adam
    # neural-style runs 1000 L-BFGS iterations on a still; the first frame has no warm start,
    # so it gets most of that. Warm frames start close to their answer and stop early (tol).
    first_iterations: int = 500
    iterations: int = 100  # ceiling for every frame after the first
    min_iterations: int = 10  # floor before early stopping may end a frame
    # Measured (bench/speed.py, bench/temporal.py): 1.5% over 5 iterations keeps the final
    # loss below the naive loop's at a fifth of its time; 1% cost ~15% more iterations for a
    # style loss ~1.5% lower; 0.1% never stops on warm frames; 5% cut warm frames' iterations
    # ~30% for 2-6% more style loss, without the fading that a low `iterations` ceiling
    # leaves under camera motion (bench/temporal.py, README).
    tol: float = 0.015  # stop when the loss falls by less than this fraction over 5 iterations
    init: str = "content"  # content | noise (first frame)
    scales: int = 1  # first frame: optimize at this many sizes, each x2, ending at `size`

    # --- video --------------------------------------------------------------------------------
    warm_start: str = "flow"  # flow | previous | none (measured: flow is steadiest)
    flow: str = "dis"  # dis | farneback
    loop: bool = False  # close the loop: the last frame flows into the first
    max_frames: int | None = None
    fps: float | None = None  # None: the input's (folders: 10); a clip is resampled to it
    start: float = 0.0  # seconds into the clip where the run starts ("1:30" is taken too)
    end: float | None = None  # seconds into the clip where it ends; None: the clip's end

    # --- runtime ------------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16 autocast runs the VGG passes on tensor cores (Grams and losses stay fp32). auto: bf16
    # on a GPU that has it, fp32 on the CPU (measured on a 2-core Xeon with AVX512-BF16: bf16
    # was 1.5x slower there).
    precision: str = "auto"  # auto | fp32 | bf16
    # On a GPU each frame's forward and backward is captured once as a CUDA graph and replayed:
    # without it the CPU's kernel launches, not the GPU, set the pace of an iteration.
    cuda_graphs: bool = True
    weights: str = field(default_factory=default_weights)  # imagenet | random | PATH
    seed: int = 0

    # --- output -------------------------------------------------------------------------------
    crf: int = 18  # H.264 quality (lower is better)
    gif_dither: str = "bayer"  # bayer | sierra2_4a | floyd_steinberg | none
    compare: bool = False  # content | style | result side by side

    def __post_init__(self):
        self.start, self.end = seconds(self.start, "start") or 0.0, seconds(self.end, "end")
        for f in fields(self):
            if f.type in _SCALARS:
                setattr(self, f.name, _scalar(f.name, getattr(self, f.name), f.type))
        # Python callers may pass one value, or a comma-separated string, for a tuple option
        for name, kind in (("temporal_frames", int), ("content_layers", str),
                           ("style_layers", str), ("style_layer_weights", float),
                           ("style_blend", float)):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            elif value is not None and not isinstance(value, (list, tuple, np.ndarray)):
                value = [value]
            if value is not None:
                try:
                    converted = tuple(kind(v) for v in value)
                    if kind is int and any(float(v) != c for v, c in zip(value, converted)):
                        raise ValueError  # 2.7 frames back
                except (TypeError, ValueError):
                    raise VStyleError(f"{name}={getattr(self, name)!r}: pass {kind.__name__} "
                                      "values, e.g. a tuple") from None
                setattr(self, name, converted)

    def __new__(cls, *args, **values):
        """Refuse an unknown keyword by name, with the option meant (Options(iteration=3),
        .replace and every function that takes options as keywords come through here)."""
        for name in values:
            if name not in cls.__dataclass_fields__:
                close = difflib.get_close_matches(name, cls.__dataclass_fields__, 1)
                raise TypeError(f"unknown option {name!r}" + (f": did you mean {close[0]!r}?"
                                                            if close else ""))
        return super().__new__(cls)

    def replace(self, **changes) -> "Options":
        return replace(self, **changes)

    @property
    def step_size(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02

    def validate(self, clip: bool = True) -> "Options":
        """Refuse absurd values in one line each, before any work is done. clip=False: one
        image (stylize_image), whose own warning names every option only a clip uses."""
        def bad(name: str, why: str):
            raise VStyleError(f"{opt(name)} {why}")

        for name in ("first_iterations", "iterations", "scales"):
            if getattr(self, name) < 1:
                bad(name, f"must be at least 1 (got {getattr(self, name)})")
        if self.size < 16:
            bad("size", f"must be at least 16 px for VGG19's four poolings (got {self.size})")
        for name in ("size", "style_size"):
            if (getattr(self, name) or 0) > MAX_SIZE:
                bad(name, f"must be at most {MAX_SIZE} px (got {getattr(self, name)}): memory "
                    "grows with the square of the size")
        if self.style_size is None and math.isfinite(self.style_scale) and \
                self.size * self.style_scale > MAX_SIZE:
            bad("style_scale", f"{self.style_scale:g} makes the style image "
                f"{self.size * self.style_scale:.0f} px; at most {MAX_SIZE}")
        if self.style_size is not None and self.style_size < 16:
            bad("style_size", f"must be at least 16 px (got {self.style_size})")
        # each scale halves the first frame, down to 32 px: more would repeat the same size
        most = len({max(32, self.size >> k) for k in range(self.size.bit_length())}) \
            if self.size >= 32 else 1
        if self.scales > most:
            bad("scales", f"can be at most {most} at {opt('size', self.size)} (got "
                f"{self.scales}; each scale halves the first frame, down to 32 px)")
        if self.min_iterations < 0:
            bad("min_iterations", f"must be 0 or more (got {self.min_iterations})")
        for name in ("content_weight", "style_weight", "tv_weight", "temporal_weight", "tol"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                bad(name, f"must be a finite number >= 0 (got {value})")
            if value > MAX_WEIGHT and name != "tol":
                bad(name, f"must be at most {MAX_WEIGHT:g} (got {value:g}): the losses are "
                    "float32 numbers, which end at 3.4e38")
        if not 0 <= self.seed < 2 ** 63:
            bad("seed", f"must be between 0 and 2**63 - 1 (got {self.seed})")
        for name in ("style_scale",):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                bad(name, f"must be a finite number > 0 (got {value})")
        if self.lr is not None and (not math.isfinite(self.lr) or self.lr <= 0):
            bad("lr", f"must be a finite number > 0 (got {self.lr})")
        if self.fps is not None and (not math.isfinite(self.fps) or self.fps <= 0
                                     or self.fps > MAX_FPS):
            bad("fps", f"must be a number > 0 and at most {MAX_FPS:.0f} (got {self.fps})")
        if not self.temporal_frames or min(self.temporal_frames) < 1:
            bad("temporal_frames", f"must be frame gaps of 1 or more, e.g. 1,2,4 (got "
                f"{','.join(map(str, self.temporal_frames))})")
        if not math.isfinite(self.start) or self.start < 0:
            bad("start", f"must be a time of 0 or more (got {self.start})")
        if self.end is not None and (not math.isfinite(self.end) or self.end <= self.start):
            bad("end", f"must come after {opt('start')} (got {self.end:g} s, "
                       f"{opt('start', self.start)} s)")
        if self.max_frames is not None and self.max_frames < 1:
            bad("max_frames", f"must be at least 1 (got {self.max_frames})")
        if not 0 <= self.crf <= 51:
            bad("crf", f"must be between 0 and 51 (got {self.crf})")
        for name, allowed in (("optimizer", ("lbfgs", "adam")), ("init", ("content", "noise")),
                              ("warm_start", ("previous", "flow", "none")),
                              ("flow", ("dis", "farneback")), ("pooling", ("max", "avg")),
                              ("precision", ("auto", "fp32", "bf16")),
                              ("gif_dither", ("bayer", "sierra2_4a", "floyd_steinberg", "none"))):
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        for weights in (self.style_layer_weights, self.style_blend):
            if weights is not None and any(not math.isfinite(w) or w < 0 for w in weights):
                bad("style_blend" if weights is self.style_blend else "style_layer_weights",
                    f"must be finite numbers >= 0 (got {','.join(map(str, weights))})")
        for name in ("style_blend", "style_layer_weights"):
            if getattr(self, name) is not None and not any(getattr(self, name)):
                bad(name, "needs at least one weight above 0")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            bad("style_layer_weights", f"needs one weight per style layer ({len(self.style_layers)})")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            bad("device", f"{self.device!r} is not understood: use auto, cpu, cuda or cuda:N")
        if not self.weights.strip():
            bad("weights", "is empty: use imagenet, random or the path of a VGG19 state dict")
        if not self.content_layers or not self.style_layers:
            bad("style_layers", f"and {opt('content_layers')} need at least one layer each")
        self._warn_ignored(clip)
        return self

    def changed(self, *names: str) -> list[str]:
        """Those of the named options set to other than their defaults."""
        default = Options.__dataclass_fields__
        return [name for name in names if getattr(self, name) != default[name].default]

    def _warn_ignored(self, clip: bool = True) -> None:
        """Options that another one makes moot: said, not silently dropped."""
        ignored = []
        if self.style_size is not None and self.style_scale != 1.0:
            ignored.append(f"{opt('style_scale')} ({opt('style_size')} sets the style's size)")
        if clip and self.iterations < self.min_iterations and self.changed("min_iterations"):
            ignored.append(f"{opt('min_iterations', self.min_iterations)} on the frames after "
                           f"the first ({opt('iterations', self.iterations)} ends them first)")
        # --loop's pull towards frame 1 is weighed by --temporal-weight in every warm start
        temporal = [opt(name) for name in self.changed("temporal_weight", "temporal_frames")
                    if not (name == "temporal_weight" and self.loop)] if clip else []
        if self.warm_start != "flow" and temporal:
            ignored.append(f"{listed(temporal)} (the temporal loss follows the optical "
                           f"flow: it needs {opt('warm_start', 'flow')})")
        elif clip and self.changed("temporal_frames") and self.temporal_weight == 0:
            ignored.append(f"{opt('temporal_frames')} ({opt('temporal_weight', 0)} turns the "
                           "temporal loss off)")
        for what in ignored:
            warn(f"ignored: {what}")

    def result_key(self) -> dict:
        """The options that change the stylized frames (for resuming a run safely)."""
        # (where the clip ends, like max_frames, leaves the frames before it as they are)
        ignore = {"device", "cuda_graphs", "max_frames", "end", "fps", "crf", "gif_dither",
                  "compare"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ignore}
