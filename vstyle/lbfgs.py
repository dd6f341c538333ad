"""A small L-BFGS for image pixels: one function evaluation per iteration, no absolute thresholds.

Why not torch.optim.LBFGS: its tolerances and its curvature test (s.y > 1e-10) are absolute, so
with Gatys' normalization (gradients ~1e-11 on a random VGG19) it stops at once or drops every
curvature pair, and without a line search its guessed steps can throw the pixels far outside
[0, 1] (the loss jumps 1000-fold). Here the curvature test is relative, a step never moves a
pixel by more than `max_step`, and a step that raises the loss by half or more is refused
(the history is dropped and the next step starts small again).
"""

from __future__ import annotations

from typing import Callable

import torch

Evaluate = Callable[[torch.Tensor], tuple[float, torch.Tensor]]  # x -> (loss, gradient)


class LBFGS:
    def __init__(self, history: int = 50, lr: float = 1.0, max_step: float = 0.25,
                 first_step: float = 0.02):
        self.history = history
        self.lr = lr
        self.max_step = max_step  # largest change of any pixel in one step ([0, 1] scale)
        self.first_step = first_step  # size of the first, steepest-descent step
        self.pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / y.s)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g by the two-loop recursion over the stored pairs."""
        if not self.pairs:
            return -g * (self.first_step / g.abs().max().clamp_min(1e-30))
        # The coefficients stay on the device: a float() here would wait for the GPU twice per
        # stored pair, every iteration.
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * torch.dot(s, q)
            q.addcmul_(y, a, value=-1)
            alphas.append(a)
        s, y, rho = self.pairs[-1]
        q.mul_(1.0 / (rho * torch.dot(y, y)))  # initial Hessian scale s.y / y.y
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * torch.dot(y, q)
            q.addcmul_(s, a - b)
        return -q * self.lr

    def remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        ys = float(torch.dot(y, s))
        if ys > 1e-10 * float(torch.dot(y, y)) and ys > 0:  # positive curvature, scale-free
            self.pairs.append((s, y, 1.0 / ys))
            del self.pairs[:-self.history]

    def step(self, x: torch.Tensor, loss: float, g: torch.Tensor, evaluate: Evaluate
             ) -> tuple[torch.Tensor, float, torch.Tensor]:
        """One iteration from (x, loss, g), flat tensors: exactly one evaluation."""
        d = self.direction(g)
        biggest = float(d.abs().max())
        if biggest > self.max_step:
            d.mul_(self.max_step / biggest)
        if float(torch.dot(g, d)) >= 0:  # not a descent direction: forget, go downhill
            self.pairs.clear()
            d = self.direction(g)
        x_new = x + d
        loss_new, g_new = evaluate(x_new)
        if not loss_new <= loss + abs(loss) * 0.5:  # a wild step (or NaN): halve, try later
            self.pairs.clear()
            self.first_step = max(self.first_step * 0.5, 1e-4)
            return x, loss, g
        self.remember(x_new - x, g_new - g)
        return x_new, loss_new, g_new
