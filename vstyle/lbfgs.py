"""A small L-BFGS for image pixels: one function evaluation per iteration, no absolute thresholds.

Why not torch.optim.LBFGS: its tolerances and its curvature test (s.y > 1e-10) are absolute, so
with Gatys' normalization (gradients ~1e-11 on a random VGG19) it stops at once or drops every
curvature pair, and without a line search its guessed steps can throw the pixels far outside
[0, 1] (the loss jumps 1000-fold). Here the curvature test is relative, a step never moves a
pixel by more than `max_step`, and a step that raises the loss by half or more is refused
(the history is dropped and the next step starts small again).

The direction uses the compact form of Byrd, Nocedal and Schnabel (1994) instead of the usual
two-loop recursion: the same -H g, from the stored pairs as two (k, n) matrices, so an
iteration costs a few large tensor products and some k x k algebra on the host instead of ~8
small operations per stored pair. Once a CUDA graph runs the network, the two-loop recursion's
hundreds of small kernel launches were the next largest cost of an iteration on a GPU.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Evaluate = Callable[[torch.Tensor], tuple]  # x -> (loss: float or 0-d tensor, gradient)


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
        self.used = 0  # slots written since the last clear (the rows worth multiplying)
        # (S g, Y g per slot, g.g) on the host for the gradient `products_of`, so that the
        # next direction needs no wait of its own
        self.products_of: torch.Tensor | None = None
        self.products: tuple[np.ndarray, np.ndarray, float] = (np.zeros(0), np.zeros(0), 0.0)

    @property
    def count(self) -> int:
        return len(self.order)

    def clear(self) -> None:
        self.order, self.used = [], 0
        self.products_of = None

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g, H the inverse Hessian estimate (see `_combine`); one wait for the device."""
        if not self.order:
            return self._steepest(g)
        return self._combine(g, *self._products(g))[0]

    def _products(self, g: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
        """(S g, Y g per slot, g.g) on the host: one wait for the device."""
        S, Y = self._rows(g)
        p = torch.cat([S @ g, Y @ g, (g @ g)[None]]).double().cpu().numpy()
        return p[:self.used], p[self.used:-1], float(p[-1])

    def _steepest(self, g: torch.Tensor) -> torch.Tensor:
        return -g * (self.first_step / g.abs().max().clamp_min(1e-30))

    def _combine(self, g: torch.Tensor, sg: np.ndarray, yg: np.ndarray, gg: float = 0.0
                 ) -> tuple[torch.Tensor, float]:
        """-H g and its slope g.(-H g), from sg = S g and yg = Y g per slot (host arrays) and
        gg = g.g: -H g = -(gamma g + S^T a - gamma Y^T w), where w = R^-1 S g,
        a = R^-T ((D + gamma Y Y^T) w - gamma Y g), R the upper triangle of S Y^T and D its
        diagonal (pairs as rows, oldest first), gamma = s.y / y.y of the newest pair. The
        k x k algebra runs on the host in float64: microseconds there, where on a GPU its
        dozen tiny kernels cost more than the two big products."""
        rows = np.array(self.order)
        sg, yg = sg[rows], yg[rows]
        sy, yy = self.SY[np.ix_(rows, rows)], self.YY[np.ix_(rows, rows)]
        gamma = sy[-1, -1] / yy[-1, -1]
        r = np.triu(sy)
        w = np.linalg.solve(r, sg)
        a = np.linalg.solve(r.T, np.diag(sy) * w + gamma * (yy @ w) - gamma * yg)
        coef = np.zeros((2, self.used))
        coef[0, rows], coef[1, rows] = a, -gamma * w
        coef_s, coef_y = torch.from_numpy(coef).to(g.device, g.dtype)
        S, Y = self.S[:self.used], self.Y[:self.used]
        hg = (coef_s @ S).add_(coef_y @ Y).add_(g, alpha=float(gamma))
        slope = -self.lr * float(a @ sg - gamma * (w @ yg) + gamma * gg)
        return hg.mul_(-self.lr), slope

    def remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Store the pair (s, y) if its curvature is positive (one wait for the device)."""
        k = self.used
        S, Y = self._rows(s)
        products = torch.cat([torch.stack([torch.dot(y, s), torch.dot(y, y)]),
                              Y @ s, S @ y, Y @ y]).double().cpu().numpy()
        self._store(s, y, products[:2], products[2:].reshape(3, k))
        self.products_of = None  # a step's carried products no longer cover every pair

    def _rows(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored S and Y rows worth multiplying (none yet: empty)."""
        if self.used:
            return self.S[:self.used], self.Y[:self.used]
        return (like.new_empty(0, like.numel()),) * 2

    def _store(self, s: torch.Tensor, y: torch.Tensor, own: np.ndarray, cross: np.ndarray
               ) -> int | None:
        """Keep (s, y), given own = (y.s, y.y) and cross = (Y s, S y, Y y) over the used rows;
        returns its slot, or None for a pair without positive curvature (not kept)."""
        ys, yy = own
        if not (ys > 1e-10 * yy and ys > 0):  # keep only positive curvature, scale-free
            return None
        k = self.used
        if self.S is None:
            m = self.history
            self.S = self.Y = s.new_zeros(0, s.numel())
            self.SY, self.YY = np.zeros((m, m)), np.zeros((m, m))
        # slots fill in turn; once all are in use the oldest pair's is overwritten
        slot = self.order.pop(0) if len(self.order) == self.history else len(self.order)
        if slot == len(self.S):  # grow by 8 rows at a time: most frames stop after 10-30
            rows = min(self.history, slot + 8) - slot
            self.S, self.Y = (torch.cat([m, m.new_zeros(rows, m.shape[1])])
                              for m in (self.S, self.Y))
        self.S[slot], self.Y[slot] = s, y
        y_s, s_y, y_y = cross
        self.SY[slot, :k], self.SY[:k, slot] = y_s, s_y  # s_new . y_j, s_j . y_new
        self.YY[slot, :k] = self.YY[:k, slot] = y_y
        self.SY[slot, slot], self.YY[slot, slot] = ys, yy
        self.used = max(k, slot + 1)
        self.order.append(slot)
        return slot

    def step(self, x: torch.Tensor, loss: float, g: torch.Tensor, evaluate: Evaluate
             ) -> tuple[torch.Tensor, float, torch.Tensor]:
        """One iteration from (x, loss, g), flat tensors: exactly one evaluation, and one wait
        for the device, which brings back the new loss together with every product the next
        direction needs (on a GPU each wait leaves it idle while the host catches up: five
        waits an iteration kept an H200 busy only 54 % of the time)."""
        if not self.order:
            d = self._steepest(g)
        else:
            if self.products_of is not g:  # g did not come from the last step: one more wait
                self.products_of, self.products = g, self._products(g)
            d, slope = self._combine(g, *self.products)
            if slope >= 0:  # not a descent direction: forget, go downhill
                self.clear()
                d = self._steepest(g)
        # no pixel moves by more than max_step, scaled on the device (no wait)
        d.mul_((self.max_step / d.abs().max().clamp_min(1e-30)).clamp(max=1.0))
        x_new = x + d
        loss_new, g_new = evaluate(x_new)
        s, y, k = x_new - x, g_new - g, self.used
        S, Y = self._rows(s)
        own = torch.stack([y @ s, y @ y, s @ g_new, y @ g_new, g_new @ g_new])
        # each stored matrix read once: S (y, g_new), Y (s, y, g_new)
        cross_s, cross_y = S @ torch.stack([y, g_new], 1), Y @ torch.stack([s, y, g_new], 1)
        loss_new = torch.as_tensor(loss_new, device=s.device).double().reshape(1)
        products = torch.cat([loss_new, torch.cat([own, cross_y.T.reshape(-1),
                                                   cross_s.T.reshape(-1)]).double()]
                             ).cpu().numpy()
        loss_new = float(products[0])
        if not loss_new <= loss + abs(loss) * 0.5:  # a wild step (or NaN): halve, try later
            self.clear()
            self.first_step = max(self.first_step * 0.5, 1e-4)
            return x, loss, g
        y_s, y_y, y_g, s_y, s_g = products[6:].reshape(5, k)
        slot = self._store(s, y, products[1:3], (y_s, s_y, y_y))
        # g_new's products with every kept pair, for the next direction
        sg, yg = np.zeros(self.used), np.zeros(self.used)
        sg[:k], yg[:k] = s_g, y_g
        if slot is not None:
            sg[slot], yg[slot] = products[3], products[4]
        self.products_of, self.products = g_new, (sg, yg, float(products[5]))
        return x_new, loss_new, g_new
