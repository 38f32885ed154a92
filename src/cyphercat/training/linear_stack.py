"""M stacks of Linear/activation/Dropout layers (every MLP and logistic regression in the zoo) trained
in lock-step with a hand-written backward pass.

Why not autograd: at M = 16 the hidden activations of the default MLP are [16, 64, 512] floats (2 MiB).
Autograd allocates a fresh tensor of that size for every intermediate of every step; on CPU that means
page faults and data that never stays in the per-core L2 cache, and the step ends up slower than its
matmuls. Here every intermediate lives in a buffer allocated once per batch size and reused.

Why the numbers still equal the one-model trainer's: each step calls the kernels that autograd calls
for the activations and the loss in the one-model run, in the same order — ``nll_loss_backward``,
``_log_softmax_backward_data``, ``threshold_backward`` and friends, which work element by element or
row by row, so batching over models changes nothing — and multiplies as :mod:`.linear_plan` checked,
per layer and batch size, sums exactly as the one-model run's ``addmm``/``mm`` do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from cyphercat.training import linear_plan
from cyphercat.training.stacked_optim import ALIGN

aten = torch.ops.aten

# activation -> (forward into ``out``, backward into ``g`` in place, which tensor the backward reads).
# These are the kernels behind the modules' forward and behind autograd's derivative formulas for them
# (``torch.relu`` is ``clamp_min(x, 0)``; ReLU's backward reads its output, GELU's its input, ...).
_ACTS: dict[type, tuple[Callable, Callable, str]] = {
    nn.ReLU: (lambda x, m, out: aten.clamp_min.out(x, 0, out=out),
              lambda g, s, m: aten.threshold_backward.grad_input(g, s, 0, grad_input=g), "out"),
    nn.Tanh: (lambda x, m, out: aten.tanh.out(x, out=out),
              lambda g, s, m: aten.tanh_backward.grad_input(g, s, grad_input=g), "out"),
    nn.Sigmoid: (lambda x, m, out: aten.sigmoid.out(x, out=out),
                 lambda g, s, m: aten.sigmoid_backward.grad_input(g, s, grad_input=g), "out"),
    nn.GELU: (lambda x, m, out: aten.gelu.out(x, approximate=m.approximate, out=out),
              lambda g, s, m: aten.gelu_backward.grad_input(g, s, approximate=m.approximate, grad_input=g), "in"),
    nn.SiLU: (lambda x, m, out: aten.silu.out(x, out=out),
              lambda g, s, m: aten.silu_backward.grad_input(g, s, grad_input=g), "in"),
    nn.LeakyReLU: (lambda x, m, out: aten.leaky_relu.out(x, m.negative_slope, out=out),
                   lambda g, s, m: aten.leaky_relu_backward.grad_input(g, s, m.negative_slope, False,
                                                                       grad_input=g), "in"),
}
# Element-wise kernels run a vector loop with a scalar tail (and split big tensors between threads); for
# these two every element is computed the same either way (a comparison, one multiplication). The
# others (exp, tanh, erf, ... in the vector library vs libm; fused multiply-adds) can round an element
# differently depending on where it falls, so they run model by model, on each model's own slice.
_SAME_IN_ANY_POSITION = (nn.ReLU, nn.LeakyReLU)


def _slices(act: nn.Module, *tensors: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The whole stack at once, or each model's own slice where position can change the rounding."""
    return [tensors] if isinstance(act, _SAME_IN_ANY_POSITION) else list(zip(*tensors, strict=True))


def _supported(m: nn.Module) -> bool:
    if type(m) in _ACTS:
        # in place, autograd differentiates other modules through their output (leaky_relu_backward with
        # self_is_result=True, ...); ReLU's backward reads its output either way
        return type(m) is nn.ReLU or not getattr(m, "inplace", False)
    return type(m) in (nn.Linear, nn.Dropout, nn.Identity)


class LinearStack:
    """The layers of M identically shaped ``nn.Sequential`` models as stacked tensors, with
    :meth:`compute_grads` filling each parameter's ``.grad`` for one mini-batch per model."""

    def __init__(self, nets: Sequence[nn.Module], device: torch.device, sample_shape: tuple[int, ...],
                 batch_sizes: Sequence[int]):
        self.nets = nets
        self.flatten = isinstance(nets[0][0], nn.Flatten)
        self.device = device
        self.layers: list[tuple[str, object]] = []
        self.params: list[torch.Tensor] = []
        self.dropouts: list[tuple[float, tuple[int, ...]]] = []
        width = self.in_width = int(np.prod(sample_shape))
        for k, m in enumerate(nets[0]):
            if isinstance(m, nn.Linear):
                # [M, in, out] (the "fast" layout) only where a weight has no fused-optimizer tail: elsewhere
                # nn.Linear's [out, in] order keeps the tail on the same elements as in the one-model run
                plan = linear_plan.choose(len(nets), m.in_features, m.out_features, m.bias is not None,
                                          tuple(batch_sizes), device,
                                          allow_fast=(m.in_features * m.out_features) % ALIGN == 0,
                                          input_grad_needed=any(kind == "linear" for kind, _ in self.layers))
                if not plan.exact:
                    warnings.warn(f"ensemble: layer {k} ({m.in_features}->{m.out_features}) could not be made to "
                                  "sum exactly as the one-model trainer does on this machine; its models agree with "
                                  "one-model training to float rounding only", stacklevel=3)
                w = torch.stack([n[k].weight.detach().t() if plan.transposed else n[k].weight.detach()
                                 for n in nets])
                b = torch.stack([n[k].bias.detach() for n in nets]) if m.bias is not None else None
                self.layers.append(("linear", (k, self._param(w, device), self._param(b, device), plan)))
                width = m.out_features
            elif isinstance(m, nn.Dropout):
                if m.p > 0:
                    self.layers.append(("dropout", len(self.dropouts)))
                    self.dropouts.append((float(m.p), (width,)))
            elif type(m) in _ACTS:
                self.layers.append(("act", m))
        self.first_linear = next(i for i, (kind, _) in enumerate(self.layers) if kind == "linear")
        self._buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def _param(self, t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        if t is None:
            return None
        p = t.to(device).contiguous()
        p.grad = torch.zeros_like(p)
        self.params.append(p)
        return p

    @staticmethod
    def accepts(net: nn.Module, sample_shape: tuple[int, ...]) -> bool:
        if not isinstance(net, nn.Sequential) or type(net).forward is not nn.Sequential.forward or len(net) == 0:
            return False
        mods = list(net)
        if isinstance(mods[0], nn.Flatten):
            if (mods[0].start_dim, mods[0].end_dim) != (1, -1):
                return False
            mods = mods[1:]
        elif len(sample_shape) != 1:
            return False
        if not mods or type(mods[-1]) is not nn.Linear:
            return False  # the loss must see the last Linear's output
        # a frozen parameter (requires_grad=False) is left alone by the one-model trainer: not here
        return all(_supported(m) for m in mods) and all(
            p.dtype == torch.float32 and p.requires_grad for m in mods for p in m.parameters())

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), -1) if self.flatten else x

    def _buffers_for(self, batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each layer's output and the gradient with respect to it, for a batch of this size."""
        if batch not in self._buffers:
            m, width, outs = len(self.nets), self.in_width, []
            for i, (kind, arg) in enumerate(self.layers):
                if kind == "linear":
                    _, w, _, plan = arg
                    width = w.shape[2] if plan.transposed else w.shape[1]
                if kind == "act" and _ACTS[type(arg)][2] == "out" and i > 0 and self.layers[i - 1][0] != "act":
                    # no backward reads a Linear's or Dropout's output: activate it in place
                    outs.append(outs[-1])
                else:
                    outs.append(torch.empty(m, batch, width, device=self.device))
            self._buffers[batch] = (outs, [torch.empty_like(o) for o in outs])
        return self._buffers[batch]

    def compute_grads(self, xb: torch.Tensor, yb: torch.Tensor, noise: list[torch.Tensor]) -> None:
        """Set each parameter's ``.grad`` to the gradient of each model's mean cross-entropy on its own
        batch ``xb[i], yb[i]`` (shapes [M, batch, features] and [M, batch])."""
        m, batch = xb.shape[:2]
        outs, grads = self._buffers_for(batch)
        inputs = [xb, *outs[:-1]]
        for (kind, arg), h, out in zip(self.layers, inputs, outs, strict=True):
            if kind == "linear":
                _, w, b, plan = arg
                linear_plan.forward(plan, h, w, b, out)
            elif kind == "dropout":
                torch.mul(h, noise[arg], out=out)
            else:
                for hi, oi in _slices(arg, h, out):
                    _ACTS[type(arg)][0](hi, arg, oi)

        # cross_entropy(logits, y) is nll_loss(log_softmax(logits)); the sum over the M * batch rows
        # scaled by 1 / batch gives each model the gradient of its own mean loss
        logits, target = outs[-1].view(m * batch, -1), yb.reshape(-1)
        log_p = torch.log_softmax(logits, 1)
        _, total = aten.nll_loss_forward(log_p, target, None, 2, -100)
        scale = torch.ones((), device=logits.device) / batch
        g = aten._log_softmax_backward_data(aten.nll_loss_backward(scale, log_p, target, None, 2, -100, total),
                                             log_p, 1, log_p.dtype).view(m, batch, -1)

        for i in range(len(self.layers) - 1, self.first_linear - 1, -1):
            kind, arg = self.layers[i]
            if kind == "linear":
                _, w, b, plan = arg
                linear_plan.weight_grad(plan, g, inputs[i], w.grad)
                if b is not None:
                    linear_plan.bias_grad(plan, g, b.grad)
                if i == self.first_linear:
                    break  # the layers below have no parameters
                g = linear_plan.input_grad(plan, g, w, inputs[i], grads[i - 1])
            elif kind == "dropout":
                g.mul_(noise[arg])
            else:
                _, backward, reads = _ACTS[type(arg)]
                for gi, si in _slices(arg, g, outs[i] if reads == "out" else inputs[i]):
                    backward(gi, si, arg)

    def write_back(self) -> None:
        with torch.no_grad():
            for kind, arg in self.layers:
                if kind != "linear":
                    continue
                k, w, b, plan = arg
                for i, net in enumerate(self.nets):
                    net[k].weight.copy_(w[i].t() if plan.transposed else w[i])
                    if b is not None:
                        net[k].bias.copy_(b[i])
