"""A small L-BFGS for image pixels: one function evaluation per iteration, no absolute thresholds.

Why not torch.optim.LBFGS: its tolerances and its curvature test (s.y > 1e-10) are absolute, so
with Gatys' normalization (gradients ~1e-11 on a random VGG19) it stops at once or drops every
curvature pair, and without a line search its guessed steps can throw the pixels far outside
[0, 1] (the loss jumps 1000-fold). Here the curvature test is relative, a step never moves a
pixel by more than `max_step`, and a step that raises the loss by half or more is refused
(the history is dropped and the next step starts small again).

The direction uses the compact form of Byrd, Nocedal and Schnabel (1994) instead of the usual
two-loop recursion: the same -H g, but from the stored pairs as two (k, n) matrices, so an
iteration costs a fixed ~30 tensor operations instead of ~8 per stored pair. Once a CUDA graph
runs the network, the two-loop recursion's hundreds of small kernel launches were the next
largest cost of an iteration on a GPU.
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
        # The pairs (s, y) live in the rows of S and Y, a ring of `history` slots; `order`
        # lists the slots in use, oldest first. SY[i, j] = s_i.y_j and YY[i, j] = y_i.y_j.
        self.S = self.Y = self.SY = self.YY = None
        self.order: list[int] = []
        self.used = 0  # slots ever written (the rows of S and Y worth multiplying)

    @property
    def count(self) -> int:
        return len(self.order)

    def clear(self) -> None:
        self.order, self.used = [], 0

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g, H the inverse Hessian estimate: gamma g + S^T a - gamma Y^T w, where
        w = R^-1 S g, a = R^-T ((D + gamma Y Y^T) w - gamma Y g), R the upper triangle of
        S Y^T and D its diagonal (pairs as rows, oldest first), gamma = s.y / y.y of the newest
        pair. The small k x k algebra runs in float64 on the device: no wait for the GPU."""
        if not self.order:
            return -g * (self.first_step / g.abs().max().clamp_min(1e-30))
        rows = torch.tensor(self.order, device=g.device)
        S, Y = self.S[:self.used], self.Y[:self.used]
        sg, yg = (S @ g).double()[rows], (Y @ g).double()[rows]
        sy = self.SY[rows][:, rows]
        yy = self.YY[rows][:, rows]
        gamma = sy[-1, -1] / yy[-1, -1]
        r = torch.triu(sy)
        w = torch.linalg.solve_triangular(r, sg[:, None], upper=True)[:, 0]
        rhs = torch.diagonal(sy) * w + gamma * (yy @ w) - gamma * yg
        a = torch.linalg.solve_triangular(r.T, rhs[:, None], upper=False)[:, 0]
        coef_s = torch.zeros(self.used, dtype=g.dtype, device=g.device)
        coef_y = torch.zeros_like(coef_s)
        coef_s[rows] = a.to(g.dtype)
        coef_y[rows] = (-gamma * w).to(g.dtype)
        hg = (coef_s @ S).add_(coef_y @ Y).add_(gamma.to(g.dtype) * g)
        return hg.mul_(-self.lr)

    def remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        ys, yy = torch.stack([torch.dot(y, s), torch.dot(y, y)]).tolist()  # one wait, not two
        if not (ys > 1e-10 * yy and ys > 0):  # keep only positive curvature, scale-free
            return
        if self.S is None:
            n, m = s.numel(), self.history
            self.S, self.Y = s.new_zeros(m, n), s.new_zeros(m, n)
            self.SY = torch.zeros(m, m, dtype=torch.float64, device=s.device)
            self.YY = torch.zeros_like(self.SY)
        # slots fill in turn; once all are in use the oldest pair's is overwritten
        slot = self.order.pop(0) if len(self.order) == self.history else len(self.order)
        self.S[slot], self.Y[slot] = s, y
        self.used = max(self.used, slot + 1)
        S, Y = self.S[:self.used], self.Y[:self.used]
        y_s, s_y, y_y = ((Y @ s).double(), (S @ y).double(), (Y @ y).double())
        self.SY[slot, :self.used] = y_s  # s_new . y_j
        self.SY[:self.used, slot] = s_y  # s_j . y_new
        self.YY[slot, :self.used] = y_y
        self.YY[:self.used, slot] = y_y
        self.order.append(slot)

    def step(self, x: torch.Tensor, loss: float, g: torch.Tensor, evaluate: Evaluate
             ) -> tuple[torch.Tensor, float, torch.Tensor]:
        """One iteration from (x, loss, g), flat tensors: exactly one evaluation."""
        d = self.direction(g)
        biggest, slope = torch.stack([d.abs().max(), torch.dot(g, d)]).tolist()
        if slope >= 0:  # not a descent direction: forget, go downhill
            self.clear()
            d = self.direction(g)
            biggest = float(d.abs().max())
        if biggest > self.max_step:
            d.mul_(self.max_step / biggest)
        x_new = x + d
        loss_new, g_new = evaluate(x_new)
        if not loss_new <= loss + abs(loss) * 0.5:  # a wild step (or NaN): halve, try later
            self.clear()
            self.first_step = max(self.first_step * 0.5, 1e-4)
            return x, loss, g
        self.remember(x_new - x, g_new - g)
        return x_new, loss_new, g_new
