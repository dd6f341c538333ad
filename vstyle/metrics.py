"""Temporal consistency: the masked warping error of Lai et al. (2018).

For each pair of frames (t-1, t), flow is computed on the *input* frames; the output frame t-1 is
warped into frame t and compared with output frame t on the pixels the flow can be trusted for
(the forward-backward mask of flow.make_warp). The figure is the mean squared difference over
those pixels (RGB in [0, 1]), averaged over frame pairs. The same figure for the input clip
itself is the floor: a result cannot be steadier than its source.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

import numpy as np

from .flow import FlowEstimator, Warp


def pair_error(warp: Warp, prev: np.ndarray, cur: np.ndarray) -> float:
    """Masked mean squared difference between `cur` and `prev` warped into its frame."""
    warped = warp.apply(prev).astype(np.float32) / 255
    diff = (cur.astype(np.float32) / 255 - warped) ** 2
    weight = warp.reliable[..., None]
    total = float(weight.sum()) * diff.shape[2]
    return float((diff * weight).sum() / total) if total > 0 else 0.0


def warping_errors(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray],
                   flow: str = "dis", gap: int = 1) -> tuple[list[float], list[float]]:
    """Per frame pair (t - gap, t): (output's warping error, input's own), streaming through
    both clips. gap > 1 measures long-term consistency (flow straight from t - gap to t).

    Inputs and outputs must be frames of the same size, in the same order.
    """
    estimator = FlowEstimator(flow)
    out_errors, in_errors = [], []
    before: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=gap)
    for cur_in, cur_out in zip(inputs, outputs):
        if len(before) == gap:
            prev_in, prev_out = before[0]
            warp = estimator.warp(prev_in, cur_in)
            out_errors.append(pair_error(warp, prev_out, cur_out))
            in_errors.append(pair_error(warp, prev_in, cur_in))
        before.append((cur_in, cur_out))
    return out_errors, in_errors


def consistency(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray],
                flow: str = "dis", gap: int = 1) -> dict[str, float | None]:
    """The clip's figures: output warping error, the input's own, and their ratio."""
    return summarize(*warping_errors(inputs, outputs, flow, gap))


def summarize(out_errors: list[float], in_errors: list[float]) -> dict[str, float | None]:
    """Per-pair errors -> the clip's mean figures (also used on errors measured during a run).
    One frame has no pair: nothing is measured, and the figures are None, not a perfect 0."""
    out_mean = float(np.mean(out_errors)) if out_errors else None
    in_mean = float(np.mean(in_errors)) if in_errors else None
    return {"warping_error": out_mean, "input_warping_error": in_mean,
            "ratio": out_mean / in_mean if in_mean else None,  # a still input: none
            "pairs": len(out_errors)}
