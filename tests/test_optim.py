"""Optimizer plumbing shared by both trainers: subnormal-free state and the stacked optimizer."""

from __future__ import annotations

import pytest
import torch

from cyphercat.config import TrainingSpec
from cyphercat.training.stacked_optim import StackedOptimizer
from cyphercat.training.trainer import FLUSH_EVERY, flush_subnormal_state, make_optimizer

TINY = torch.finfo(torch.float32).tiny
# without (coupled) weight decay a zero gradient stays exactly zero, so dead entries decay to subnormals
SPECS = {
    "adam": TrainingSpec(optimizer="adam", lr=1e-2),
    "adam_wd": TrainingSpec(optimizer="adam", lr=1e-2, weight_decay=1e-3),
    "adamw": TrainingSpec(optimizer="adamw", lr=1e-2, weight_decay=1e-2),
    "sgd": TrainingSpec(optimizer="sgd", lr=1e-2, momentum=0.9),
    "sgd_wd": TrainingSpec(optimizer="sgd", lr=1e-2, momentum=0.9, weight_decay=1e-3),
}


def subnormal(t: torch.Tensor) -> torch.Tensor:
    return (t != 0) & (t.abs() < TINY)


def grads_that_die(step: int, shape, gen: torch.Generator) -> torch.Tensor:
    """Random gradients; after step 5 half the entries are exactly zero, like a dead ReLU unit's."""
    g = torch.randn(shape, generator=gen)
    if step > 5:
        g[..., ::2] = 0
    return g


def test_moments_of_a_dead_unit_get_stuck_as_subnormals_unless_flushed():
    for flush in (False, True):
        p = torch.zeros(16, requires_grad=True)
        opt = make_optimizer([p], SPECS["adam"])
        gen = torch.Generator().manual_seed(0)
        for step in range(1, 1001):
            p.grad = grads_that_die(step, (16,), gen)
            opt.step()
            if flush and step % FLUSH_EVERY == 0:
                flush_subnormal_state(opt)
        m = opt.state[p]["exp_avg"]
        if flush:
            assert not subnormal(m).any()
        else:  # 0.9 * x rounds back to x down there: they never leave
            assert subnormal(m).sum() == 8


def test_flush_zeroes_only_subnormals():
    p = torch.zeros(6, requires_grad=True)
    opt = make_optimizer([p], SPECS["adam"])
    p.grad = torch.ones(6)
    opt.step()
    values = torch.tensor([1e-40, -1e-40, TINY, -TINY, 0.5, -3.0])
    opt.state[p]["exp_avg"].copy_(values)
    opt.state[p]["exp_avg_sq"].copy_(values.abs())
    step = opt.state[p]["step"].clone()
    flush_subnormal_state(opt)
    assert opt.state[p]["exp_avg"].tolist() == [0.0, 0.0, TINY, -TINY, 0.5, -3.0]
    assert opt.state[p]["exp_avg_sq"].tolist() == [0.0, 0.0, TINY, TINY, 0.5, 3.0]
    assert torch.equal(opt.state[p]["step"], step)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_stacked_optimizer_equals_one_optimizer_per_model(name):
    """Aligned (64 per model) and unaligned shapes, over enough steps for dead entries to go subnormal."""
    m, shapes = 3, [(64,), (10,), (7, 3), (4, 32)]
    gen = torch.Generator().manual_seed(1)
    start = [torch.randn(m, *s, generator=gen) for s in shapes]
    stacked = [t.clone().requires_grad_() for t in start]
    stacked_opt = StackedOptimizer(stacked, SPECS[name])
    singles = [[t[i].clone().requires_grad_() for t in start] for i in range(m)]
    single_opts = [make_optimizer(ps, SPECS[name]) for ps in singles]
    for step in range(1, 905):
        grads = [grads_that_die(step, (m, *s), gen) for s in shapes]
        for p, g in zip(stacked, grads, strict=True):
            p.grad = g
        stacked_opt.step()
        for i, (ps, opt) in enumerate(zip(singles, single_opts, strict=True)):
            for p, g in zip(ps, grads, strict=True):
                p.grad = g[i].clone()
            opt.step()
            if step % FLUSH_EVERY == 0:
                flush_subnormal_state(opt)
    for k, p in enumerate(stacked):
        want = torch.stack([ps[k] for ps in singles])
        assert torch.equal(p.detach(), want.detach()), (shapes[k], (p - want).abs().max().item())
    if name.startswith("adam"):
        assert stacked_opt._fast is not None  # the direct kernel call was the one exercised
    moments = [t for st in stacked_opt.opt.state.values() for k, t in st.items() if k != "step"]
    assert not any(subnormal(t).any() for t in moments)
