"""The optimiser of mlctl's torch training loop: AdamW, written out.

``torch.optim``'s constructor imports torch's compiler stack, seconds of start-up for every training
process that this small CPU loop never uses; :class:`AdamW` is the arithmetic of
``torch.optim.AdamW``'s default single-tensor path (checked against it by a test).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["AdamW"]


class AdamW:
    """AdamW (Adam with decoupled weight decay) over ``params``, stepping like ``torch.optim.AdamW``."""

    def __init__(
        self,
        torch: Any,
        params: Iterable[Any],
        *,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.torch = torch
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.steps
        correction2_sqrt = math.sqrt(1 - beta2**self.steps)
        with self.torch.no_grad():
            for p, avg, avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
                if p.grad is None:
                    continue
                grad = p.grad
                p.mul_(1 - self.lr * self.weight_decay)
                avg.lerp_(grad, 1 - beta1)
                avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
                p.addcdiv_(avg, denom, value=-self.lr / correction1)
