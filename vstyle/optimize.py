"""Stylize one frame: optimize its pixels so VGG19 features match the content and style targets."""

from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .errors import VStyleError, opt, plural, warn
from .lbfgs import LBFGS
from .options import Options
from .vgg import VGGFeatures, block_of, load_features, resolve_device

OnStep = Callable[[int, int, float], None]  # (iteration, max iterations, loss)

WINDOW = 5  # early stopping compares the loss with the one this many iterations back

# Gram matmuls on TF32 tensor cores when the network runs in bf16 on a GPU: bf16 features are
# exact in TF32 (7 vs 10 mantissa bits) and the products still add up in fp32; what TF32 rounds
# (the Grams' gradient in the backward, features times a fractional mask) is rounded to bf16
# right after anyway. A switch for bench/speed.py's "without" row.
TF32_GRAMS = True


class FreshRegion(NamedTuple):
    """Pixels painted for the first time, prepared once per frame (see Stylizer.perceptual)."""
    share: torch.Tensor  # their fraction of the frame
    masks: dict[str, torch.Tensor]  # their mask averaged down to each fresh layer's size
    # where each mask is not 0 (flat positions), so that their Gram reads those columns only;
    # None under a CUDA graph, whose inputs keep their shapes from frame to frame
    at: dict[str, torch.Tensor] | None = None


@dataclass
class TemporalTarget:
    """An earlier result warped into this frame: (1, 3, H, W), its (1, 1, H, W) mask, a weight."""
    warped: torch.Tensor
    mask: torch.Tensor
    weight: float


class FrameInputs(NamedTuple):
    """Everything the objective reads that changes from frame to frame, as tensors only, so
    that a captured CUDA graph can be fed a new frame by copying into them."""
    content: dict[str, torch.Tensor]  # the content frame's features, per content layer
    temporal: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (warped, mask, weight)
    fresh: FreshRegion | None

    def tensors(self) -> list[torch.Tensor]:
        fresh = [] if self.fresh is None else [self.fresh.share, *self.fresh.masks.values()]
        return [*self.content.values(), *(t for term in self.temporal for t in term), *fresh]

    def key(self) -> tuple:
        """Frames with the same key fit the same captured graph."""
        return (tuple(self.content), len(self.temporal), self.fresh is None,
                tuple((tuple(t.shape), t.dtype) for t in self.tensors()))

    def clone(self) -> "FrameInputs":
        """A copy to hold a captured step's fixed buffers. The new pixels' positions (`at`)
        are left out: their count changes from frame to frame, which `load` could not copy
        in, and the dense masks give the same loss for every frame."""
        fresh = None if self.fresh is None else FreshRegion(
            self.fresh.share.clone(), {l: m.clone() for l, m in self.fresh.masks.items()})
        return FrameInputs({l: f.clone() for l, f in self.content.items()},
                           [tuple(t.clone() for t in term) for term in self.temporal], fresh)


# (x, frame inputs) -> (loss, gradient with respect to x, unweighted parts), all tensors
LossAndGrad = Callable[[torch.Tensor, FrameInputs],
                       tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]


class CapturedStep:
    """`loss_and_grad` for one structure of inputs, recorded once as a CUDA graph and then
    replayed: the VGG forward and backward and every loss term become one launch instead of
    hundreds of small ones that the CPU issues slower than the GPU runs them (profiled on an
    H200 at 512 px: the GPU was busy only a quarter of each iteration).

    The graph reads and writes fixed memory: `load` copies a frame's inputs into it and each
    call copies x in. Each call returns a copy of the gradient (L-BFGS keeps gradients from
    one iteration to the next); the loss and the parts are overwritten by the next call. With
    capture=False it runs eagerly on the same buffers (how the CPU tests check that plumbing).
    """

    def __init__(self, fn: LossAndGrad, x: torch.Tensor, inputs: FrameInputs,
                 capture: bool = True):
        self.fn, self.x, self.inputs = fn, x.detach().clone(), inputs.clone()
        self.graph = None
        if capture:
            # Streams and the capture belong to the current device: make it x's, or on cuda:1
            # the work would run on a stream nobody captures and the graph would be empty.
            with torch.cuda.device(x.device):
                side = torch.cuda.Stream()  # warm up off the default stream, as capture needs
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):  # cuDNN's autotuner and lazy inits run before capture
                        fn(self.x, self.inputs)
                torch.cuda.current_stream().wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.out = fn(self.x, self.inputs)

    def load(self, inputs: FrameInputs) -> None:
        for mine, new in zip(self.inputs.tensors(), inputs.tensors()):
            mine.copy_(new)

    def __call__(self, x: torch.Tensor):
        self.x.copy_(x.view_as(self.x))
        if self.graph is None:
            return self.fn(self.x, self.inputs)
        with torch.cuda.device(self.x.device):
            self.graph.replay()
        loss, grad, parts = self.out
        return loss, grad.clone(), parts


@dataclass
class FrameStats:
    """What one frame's optimization did (for progress, reports and benchmarks)."""
    iterations: int = 0
    seconds: float = 0.0
    loss: float = float("nan")  # the normalized total the optimizer saw
    # the unweighted terms: content, style, tv, temporal, fresh_style (new pixels' own style)
    parts: dict[str, float] = field(default_factory=dict)


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div_(255).contiguous()


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, clamped to [0, 1] first."""
    x = tensor.detach()[0].clamp(0, 1).mul(255).round_().byte()
    return x.permute(1, 2, 0).contiguous().cpu().numpy()


class Stylizer:
    """Holds the network and the style targets for a run; `stylize` does one frame."""

    def __init__(self, styles: list[np.ndarray], options: Options, net: VGGFeatures | None = None,
                 features: nn.Sequential | None = None):
        """net: the network ready to use; or features: VGG19's layers, loaded; or neither:
        loaded here from options.weights."""
        self.options = options
        self.device = resolve_device(options.device)
        layers = list(dict.fromkeys(options.content_layers + options.style_layers))
        if net is None:
            if features is None:
                features = load_features(options.weights, options.seed)
            net = VGGFeatures(features, layers, options.pooling)
        self.bf16 = use_bf16(options.precision, self.device)
        self.tf32 = TF32_GRAMS and self.bf16 and self.device.type == "cuda"
        # On a GPU: NHWC convolutions are the tensor cores' native layout, and the frame size is
        # fixed for a run, so cuDNN's autotuner picks its fastest kernels once.
        self.channels_last = self.device.type == "cuda"
        if self.channels_last:
            torch.backends.cudnn.benchmark = True
            net = net.to(memory_format=torch.channels_last)
        self.net = net.to(self.device)
        self.styles = styles  # RGB uint8 images, already at their processing size
        blend = options.style_blend or (1.0,) * len(styles)
        if len(blend) != len(styles):
            raise VStyleError(f"{opt('style_blend')} has {plural(len(blend), 'weight')} for "
                              f"{plural(len(styles), 'style image')}: give one weight per style")
        total = sum(blend) or 1.0
        self.blend = [w / total for w in blend]
        layer_weights = options.style_layer_weights or (1.0,) * len(options.style_layers)
        self.layer_weights = dict(zip(options.style_layers, layer_weights))
        # the new pixels' own style term uses blocks 1-3 (see perceptual)
        self.fresh_layers = [l for l in options.style_layers if block_of(l) <= 3] or \
            list(options.style_layers)
        self.style_grams = self._style_grams()  # once per run
        self.reference: float | None = None  # loss normalization, fixed by the first frame
        self.graphs = self.device.type == "cuda" and options.cuda_graphs
        self.captured: OrderedDict[tuple, CapturedStep] = OrderedDict()  # the latest few

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The VGG activations of (1, 3, H, W) images, under autocast when running in bf16."""
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        # no cast cache: it is only for weights that need gradients, and CUDA graphs forbid it
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16,
                            cache_enabled=False):
            return self.net(image)

    @torch.no_grad()
    def _style_grams(self) -> dict[str, torch.Tensor]:
        """Blended Gram targets: sum_k w_k * Gram(style_k), per style layer."""
        grams: dict[str, torch.Tensor] = {}
        for style, weight in zip(self.styles, self.blend):
            feats = self.features(to_tensor(style, self.device))
            with tf32_matmuls(self.tf32):
                for layer in self.options.style_layers:
                    g = losses.gram(feats[layer]) * weight
                    grams[layer] = grams[layer] + g if layer in grams else g
        return grams

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(content)
        return {layer: feats[layer] for layer in self.options.content_layers}

    def fresh_region(self, mask: torch.Tensor, gather: bool = False) -> FreshRegion:
        """A (1, 1, H, W) mask of new pixels, averaged down to each fresh layer's size (every
        pooling before it halves it, rounding down) once, not in every iteration; with
        `gather`, also where each is not 0 (on the CPU a 5 % strip's Grams, dense, cost a
        fifth of an iteration at 256 px)."""
        h, w = mask.shape[-2:]
        sizes = {l: (h >> block_of(l) - 1, w >> block_of(l) - 1) for l in self.fresh_layers}
        masks = {l: F.interpolate(mask, size=s, mode="area") for l, s in sizes.items()}
        at = {l: m.flatten().nonzero().squeeze(1) for l, m in masks.items()} if gather else None
        return FreshRegion(mask.mean(), masks, at)

    def perceptual(self, image, targets, fresh: FreshRegion | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """alpha * content + beta * style, unnormalized, and the unweighted parts.

        `fresh` marks pixels painted for the first time (uncovered, or entering at the
        border). The Gram is global: once the rest of the frame matches the style, little
        pushes a new region to match it too, and it stays nearly bare (on a pan, a growing
        unpainted band). Its own Gram (Gatys et al. 2017's guided Gram), weighted by its share
        of the frame, asks it to match the style as well, on the style layers of blocks 1-3
        only: deeper ones see far beyond a thin new strip, and their pull on the settled pixels
        around it measured as +25 % warping error on a pan, for no better painting."""
        o = self.options
        feats = self.features(image)
        content = sum(losses.content_loss(feats[l], targets[l]) for l in o.content_layers)
        style = sum(self.layer_weights[l] * losses.style_layer_loss(feats[l], self.style_grams[l])
                    for l in o.style_layers)
        parts = {"content": content, "style": style}
        total = o.content_weight * content + o.style_weight * style
        if fresh is not None:
            parts["fresh_style"] = sum(
                self.layer_weights[l] * losses.style_layer_loss(
                    feats[l], self.style_grams[l], m, None if fresh.at is None else fresh.at[l])
                for l, m in fresh.masks.items())
            total = total + o.style_weight * fresh.share * parts["fresh_style"]
        return total, parts

    @torch.no_grad()
    def calibrate(self, content: torch.Tensor, init: torch.Tensor) -> float:
        """Fix the loss normalization from frame 1's starting point.

        With the 1/(4 N^2 M^2) normalization the raw loss is tiny (gradients ~1e-11 with a
        random VGG19), which stops L-BFGS at once and makes it drop its curvature pairs.
        Dividing by frame 1's starting loss makes frame 1 start at 1 and keeps every later
        frame on the same scale, so their losses stay comparable.
        """
        value, _ = self.perceptual(init, self.content_targets(content))
        self.reference = float(value.sum()) or 1.0
        return self.reference

    def initial(self, content: torch.Tensor) -> torch.Tensor:
        """Frame 1's starting point: its content, or seeded uniform noise."""
        if self.options.init == "content":
            return content.clone()
        gen = torch.Generator().manual_seed(self.options.seed)
        return torch.rand(content.shape, generator=gen).to(content.device)

    def stylize(self, content: torch.Tensor, init: torch.Tensor, max_iterations: int,
                temporal: list[TemporalTarget] = (), on_step: OnStep | None = None,
                fresh: torch.Tensor | None = None) -> tuple[torch.Tensor, FrameStats]:
        """Optimize from `init` towards `content` (both (1, 3, H, W) in [0, 1]).

        `temporal` targets (earlier results moved along the optical flow, with the mask of where
        that is reliable and a weight) add Ruder et al.'s temporal term for each.
        """
        if self.reference is None:
            self.calibrate(content, init)
        inputs = FrameInputs(
            self.content_targets(content),
            [(t.warped, t.mask, torch.tensor(float(t.weight), device=self.device))
             for t in temporal],
            None if fresh is None else self.fresh_region(fresh, gather=not self.graphs))
        step = self.step_for(init, inputs)
        return run_optimizer(init, step, max_iterations, self.options, on_step)

    def loss_and_grad(self, x: torch.Tensor, inputs: FrameInputs):
        """The normalized objective at x, its gradient with respect to x, and its parts."""
        with tf32_matmuls(self.tf32):  # the backward's matmuls too
            return self._loss_and_grad(x, inputs)

    def _loss_and_grad(self, x: torch.Tensor, inputs: FrameInputs):
        o = self.options
        x = x.detach().requires_grad_(True)
        perceptual, parts = self.perceptual(x, inputs.content, inputs.fresh)
        total = perceptual / self.reference
        if o.tv_weight > 0:
            parts["tv"] = losses.tv_loss(x)
            total = total + o.tv_weight * parts["tv"]
        for warped, mask, weight in inputs.temporal:
            term = losses.temporal_loss(x, warped, mask)
            parts["temporal"] = parts.get("temporal", 0) + term
            total = total + weight * term
        loss = total.sum()
        (grad,) = torch.autograd.grad(loss, x)
        return loss.detach(), grad, {k: v.detach() for k, v in parts.items()}

    def step_for(self, x: torch.Tensor, inputs: FrameInputs) -> Callable:
        """x -> (loss, gradient, parts) for this frame: on a GPU a replayed CUDA graph, kept
        for the last few input structures (first frame; warm frames with or without new
        pixels...), else eager."""
        step = self.captured_step(x, inputs) if self.graphs else None
        if step is None:
            return lambda x: self.loss_and_grad(x, inputs)
        step.load(inputs)
        return step

    def captured_step(self, x: torch.Tensor, inputs: FrameInputs) -> CapturedStep | None:
        """The graph for this structure of inputs, recorded now if it is new; None (and no
        graphs from then on) where capture fails: an op or driver graphs do not support."""
        key = (inputs.key(), tuple(x.shape), self.reference)
        step = self.captured.pop(key, None)
        if step is None:
            try:
                step = CapturedStep(self.loss_and_grad, x, inputs)
            except Exception as e:
                warn(f"CUDA graph capture failed ({type(e).__name__}: "
                     f"{str(e).splitlines()[0][:100] if str(e) else ''}); running "
                     "without CUDA graphs (slower)")
                self.graphs = False
                self.captured.clear()
                return None
            while len(self.captured) >= 2:  # each graph holds its own memory
                self.captured.popitem(last=False)
        self.captured[key] = step
        return step


@contextmanager
def tf32_matmuls(enabled: bool):
    """CUDA fp32 matmuls on TF32 tensor cores for a block, then as the caller had them. Only
    that one flag is touched, through the API this torch has: torch >= 2.9 refuses to read a
    flag that was set through both its old and its new API. The flag is process-wide: two runs
    in threads of one process could see each other's (vstyle batch uses processes)."""
    matmul = torch.backends.cuda.matmul
    name, value = ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else \
        ("allow_tf32", True)
    before = getattr(matmul, name) if enabled else value
    if before == value:  # off, or the caller runs them on TF32 already
        yield
        return
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, before)


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return False
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if precision == "auto":
            return False
        raise VStyleError(f"{opt('precision', 'bf16')}: this GPU has no bfloat16 support; "
                          f"use {opt('precision', 'fp32')}")
    return True


def run_optimizer(init: torch.Tensor, step: Callable, max_iterations: int, o: Options,
                  on_step: OnStep | None) -> tuple[torch.Tensor, FrameStats]:
    """Minimize from `init`; step(x) -> (loss, gradient, parts); one evaluation per iteration.

    L-BFGS (ours, see lbfgs.py) or Adam. Stops early when the loss has fallen by less than
    `tol` over the last few iterations.
    """
    start = time.perf_counter()
    shape = init.shape
    last_parts: dict = {}

    def evaluate(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad, parts = step(flat.view(shape))
        last_parts.clear()
        last_parts.update(parts)  # a graph overwrites these in its next call: read at the end
        return loss, grad.reshape(-1)  # the loss stays on the device: L-BFGS fetches it

    x = init.detach().reshape(-1).clone()
    history: list[float] = []
    if o.optimizer == "lbfgs":
        lbfgs = LBFGS(lr=o.step_size)
        loss, grad = evaluate(x)
        loss = float(loss)
    else:
        param = x.view(shape).clone().requires_grad_(True)
        adam = torch.optim.Adam([param], lr=o.step_size)
    for i in range(1, max_iterations + 1):
        if o.optimizer == "lbfgs":
            x, loss, grad = lbfgs.step(x, loss, grad, evaluate)
        else:
            loss, grad = evaluate(param.detach().reshape(-1))
            loss = float(loss)
            param.grad = grad.view(shape)
            adam.step()
            with torch.no_grad():
                param.clamp_(0, 1)  # keep Adam inside the image range
        history.append(loss)
        if on_step is not None:
            on_step(i, max_iterations, loss)
        if not np.isfinite(loss):  # a result made of NaNs is no result
            raise VStyleError(f"the loss became {loss} at iteration {i}: the weights file gives "
                              "numbers float32 cannot hold, or the loss weights are too large; "
                              f"check {opt('weights')}, or lower {opt('style_weight')} and "
                              f"{opt('content_weight')}")
        if i >= max(o.min_iterations, WINDOW + 1) and o.tol > 0:
            before = history[-WINDOW - 1]
            if before - loss < o.tol * abs(before):
                break
    result = x.view(shape) if o.optimizer == "lbfgs" else param.detach()
    stats = FrameStats(iterations=len(history), seconds=time.perf_counter() - start,
                       loss=history[-1] if history else float("nan"),
                       parts={k: float(v.sum()) for k, v in last_parts.items()})
    return result.clamp(0, 1), stats


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (1, 3, H, W) to size=(w, h), kept in [0, 1]."""
    w, h = size
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1)
