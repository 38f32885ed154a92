"""The one-model trainer: deterministic given (model init seed, data-order seed).

Mini-batches are slices of a per-epoch permutation drawn from a private ``torch.Generator``; dropout
and other in-model randomness run under :func:`cyphercat.seeding.torch_rng`, so two runs with the
same seed give bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from cyphercat.config import TrainingSpec
from cyphercat.errors import CyphercatError
from cyphercat.seeding import torch_rng

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, nn.Module], bool]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the caller's setting afterwards.

    BLAS kernels may split a reduction differently with a different (or load-dependent) number of
    threads, which changes results in the last bits; pinning the count is part of what makes a spec
    and a seed give the same numbers on every machine and every backend."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Optimizer state is cleared of subnormal numbers every this many steps (see flush_subnormal_state).
FLUSH_EVERY = 8


def flush_subnormal_state(opt: torch.optim.Optimizer) -> None:
    """Set the subnormal entries of an optimizer's moment buffers to zero.

    Why: a weight whose gradient is exactly zero (a dead ReLU unit, say) sees Adam's first moment, and
    SGD's momentum, shrink by 0.9 a step into the subnormal range, where 0.9 * x rounds back to x: it
    stays there for good and every later step pays a microcode assist for each such element. On the
    default MLP that made the optimizer steps of the second half of a 300-epoch run 3x slower. Setting
    values below 1.2e-38 to zero changes nothing that matters, and is exact and thread-independent
    (unlike the CPU's flush-to-zero mode, which is a per-thread flag). Both trainers call this every
    :data:`FLUSH_EVERY` steps, so their results stay equal."""
    for state in opt.state.values():
        for key, t in state.items():
            if key != "step" and torch.is_tensor(t) and t.is_floating_point() and t.dim() > 0:
                largest_subnormal = torch.finfo(t.dtype).tiny * (1 - torch.finfo(t.dtype).eps)
                torch.ops.aten.hardshrink.out(t, largest_subnormal, out=t)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CyphercatError("device", "cuda was asked for but no CUDA device is available",
                             "use --device auto or --device cpu")
    if name not in ("cpu", "cuda"):
        raise CyphercatError("device", f"unknown device {name!r}", "use auto, cpu or cuda")
    return torch.device(name)


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.is_floating_point():
        t = t.float()
    return t.to(device)


def make_optimizer(params, training: TrainingSpec) -> torch.optim.Optimizer:
    params = list(params)
    if training.optimizer == "sgd":
        return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum,
                               weight_decay=training.weight_decay)
    # The fused kernel does Adam's update in one pass over each tensor instead of about eight, which
    # is most of an optimizer step's cost (the same arithmetic, rounded differently in the last bit).
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    adam = torch.optim.AdamW if training.optimizer == "adamw" else torch.optim.Adam
    return adam(params, lr=training.lr, weight_decay=training.weight_decay, fused=fused)


def train_model(net: nn.Module, x: np.ndarray, y: np.ndarray, training: TrainingSpec, seed: int,
                device: torch.device | str = "cpu", loss_fn: LossFn | None = None,
                epoch_callback: EpochCallback | None = None) -> nn.Module:
    """Train ``net`` in place on (x, y) and return it in eval mode.

    ``loss_fn`` replaces cross-entropy (training-time defenses such as label smoothing use it);
    ``epoch_callback(epoch, net)`` returning True stops training (early stopping)."""
    if len(y) == 0:
        raise CyphercatError("splits", "a model was asked to train on zero records", "enlarge the split")
    device = resolve_device(device)
    loss_fn = loss_fn or nn.functional.cross_entropy
    xt, yt = to_tensor(x, device), torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
    gen = torch.Generator().manual_seed(int(seed))
    net.to(device).train()
    opt = make_optimizer(net.parameters(), training)
    steps_per_epoch = -(-len(yt) // training.batch_size)
    step = 0
    with torch_rng(int(seed) ^ 0x5EED, device):
        for epoch in range(training.epochs):
            perm = torch.randperm(len(yt), generator=gen).to(device)
            for b in range(steps_per_epoch):
                idx = perm[b * training.batch_size:(b + 1) * training.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                step += 1
                if step % FLUSH_EVERY == 0:
                    flush_subnormal_state(opt)
            if epoch_callback is not None:
                net.eval()
                stop = epoch_callback(epoch, net)
                net.train()
                if stop:
                    break
    return net.eval()


@torch.no_grad()
def predict_logits(net: nn.Module, x: np.ndarray, device: torch.device | str = "cpu",
                   batch_size: int = 2048) -> np.ndarray:
    device = resolve_device(device)
    net.to(device).eval()
    outs = [net(to_tensor(x[i:i + batch_size], device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)
