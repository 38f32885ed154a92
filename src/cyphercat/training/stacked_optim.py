"""One optimizer for M models whose parameters are stacked along a leading axis.

Adam, AdamW and SGD are elementwise, so a single optimizer over the stacked tensors does for slice i
what model i's own optimizer would — with one catch. A fused optimizer kernel runs whole vectors of
elements and finishes a tensor's last ``numel % vector`` elements one at a time, with different
rounding (seen on this CPU for a 10-element bias). A stacked tensor has no such tail
where the one-model tensor has one, so a parameter whose per-model size is not a multiple of
:data:`ALIGN` is handed to the optimizer as M separate slices, each with the tail the one-model run
gives it. Aligned parameters stay stacked: one kernel call covers all models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cyphercat.config import TrainingSpec
from cyphercat.training.trainer import FLUSH_EVERY, flush_subnormal_state, make_optimizer

# 64 elements = 256 bytes of float32: a multiple of every SIMD width and of the 64-byte work units the
# fused CPU kernels split tensors into, so an aligned tensor never reaches a scalar tail.
ALIGN = 64


class StackedOptimizer:
    """``make_optimizer(training)`` for the stacked tensors, each slice updated as its model's own would be."""

    def __init__(self, stacked: Sequence[torch.Tensor], training: TrainingSpec):
        self.stacked = list(stacked)
        fused = bool(make_optimizer([torch.zeros(1)], training).defaults.get("fused"))
        self.split = [p for p in self.stacked if fused and p[0].numel() % ALIGN]
        split_ids = {id(p) for p in self.split}
        self.views = [[p.detach()[i] for i in range(len(p))] for p in self.split]
        self.targets = [p for p in self.stacked if id(p) not in split_ids] + [v for vs in self.views for v in vs]
        self.opt = make_optimizer(self.targets, training)
        self._fast = _fused_adam_call(self.opt)
        self.steps = 0

    def step(self) -> None:
        for p, views in zip(self.split, self.views, strict=True):
            for i, v in enumerate(views):
                v.grad = None if p.grad is None else p.grad[i]
        if self._fast is None or not self.opt.state or any(t.grad is None for t in self.targets):
            self.opt.step()  # the first step also creates the optimizer's state
        else:
            self._fast([t.grad for t in self.targets])
        self.steps += 1
        if self.steps % FLUSH_EVERY == 0:
            flush_subnormal_state(self.opt)


def _fused_adam_call(opt: torch.optim.Optimizer):
    """The kernel call that ``opt.step()`` ends in for a fused Adam/AdamW, without the bookkeeping around
    it. With ~20 tensors that bookkeeping (grouping by device, bumping one step counter per tensor)
    costs a sizeable fraction of what the kernel itself does; here all tensors share one
    step counter, which holds the same number as the per-tensor ones would. None where that does not
    apply (other optimizers, amsgrad, mixed devices or dtypes, a torch without the kernel)."""
    group = opt.param_groups[0]
    params = group["params"]
    if (len(opt.param_groups) != 1 or not group.get("fused") or group.get("amsgrad") or group.get("maximize")
            or len({(p.device, p.dtype) for p in params}) != 1):
        return None
    if isinstance(opt, torch.optim.AdamW):
        kernel = getattr(torch, "_fused_adamw_", None)
    elif type(opt) is torch.optim.Adam:
        kernel = getattr(torch, "_fused_adam_", None)
    else:
        return None
    if kernel is None:
        return None
    beta1, beta2 = group["betas"]
    state: list[list[torch.Tensor]] = []

    def call(grads: list[torch.Tensor]) -> None:
        if not state:  # the first opt.step() created the state; from here on it is updated in place
            shared = opt.state[params[0]]["step"]
            for p in params:
                opt.state[p]["step"] = shared
            state.extend([[opt.state[p]["exp_avg"] for p in params], [opt.state[p]["exp_avg_sq"] for p in params],
                          [shared] * len(params)])
        with torch.no_grad():
            state[2][0].add_(1)
            kernel(params, grads, state[0], state[1], [], state[2], lr=group["lr"], beta1=beta1, beta2=beta2,
                   weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False, maximize=False)

    return call
