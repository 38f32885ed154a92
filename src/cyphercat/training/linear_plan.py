"""How the Linear layers of a model stack multiply, chosen so that every model's sums are the sums of
its own one-model run.

For ``nn.Linear`` on a batch, the one-model run (``F.linear`` and autograd's formulas for it) computes

    forward       addmm(b, x, W.t())        (mm without a bias)
    weight grad   mm(g.t(), x)
    input grad    mm(g, W), or mm(W.t(), g.t()).t() when x is column-major (autograd's
                  mm_mat1_backward; for a contiguous x that is a batch of one row of width one)
    bias grad     g.sum(0)

The same products for M models can run as one ``bmm``, but nothing promises the same rounding: torch's
CPU ``bmm`` multiplies matrices of fewer than 400 multiply-adds with a loop of its own, BLAS treats a
product with one row or column as a matrix-vector product, and storing W transposed (which speeds up
the forward of the default MLP) changes the summation for some shapes — a last batch of two records,
say. Rather than trust a rule of thumb, :func:`choose` runs the candidate plans on random data
of exactly the shapes a run will use, against the per-model calls above, and keeps the fastest that
agrees bit for bit: ``fast`` (weights stored [M, in, out]), ``mirror`` (stored like ``nn.Linear``,
[M, out, in], the one-model's operands and transposition flags), or ``loop`` (model by model, the
one-model calls themselves). Summation order depends on shapes, strides and flags, never on the
values, so agreement on random data means the same order — given enough of it: two orders of a short
sum often round alike, so every product is compared on at least :data:`PROBE_OUTPUTS` outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FAST, MIRROR, LOOP = "fast", "mirror", "loop"
# Two summation orders of one sum round alike with probability well under 1/2 once it has 3+ terms, so
# agreement on this many outputs of each product leaves no practical chance of a coincidence.
PROBE_OUTPUTS = 256


@dataclass(frozen=True)
class Plan:
    layout: str          # FAST, MIRROR or LOOP
    loop_bias: bool      # sum the bias gradient model by model
    exact: bool = True   # False: not even the model-by-model calls agreed (left as the closest we have)

    @property
    def transposed(self) -> bool:
        return self.layout == FAST


def forward(plan: Plan, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, out: torch.Tensor) -> None:
    if plan.layout == LOOP:
        for i in range(len(w)):
            if b is None:
                torch.mm(h[i], w[i].t(), out=out[i])
            else:
                torch.addmm(b[i], h[i], w[i].t(), out=out[i])
        return
    wt = w if plan.layout == FAST else w.mT
    if b is None:
        torch.bmm(h, wt, out=out)
    else:
        torch.baddbmm(b.unsqueeze(1), h, wt, out=out)


def weight_grad(plan: Plan, g: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
    if plan.layout == FAST:
        torch.bmm(x.mT, g, out=out)
    elif plan.layout == MIRROR:
        torch.bmm(g.mT, x, out=out)
    else:
        for i in range(len(out)):
            torch.mm(g[i].t(), x[i], out=out[i])


def _column_major(x: torch.Tensor) -> bool:
    return x.stride(0) == 1 and x.stride(1) == x.shape[0]


def _one_input_grad(g: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Autograd's mm_mat1_backward for ``x @ w.t()``: the orientation follows x's memory order."""
    return torch.mm(w.t(), g.t()).t() if _column_major(x) else torch.mm(g, w)


def input_grad(plan: Plan, g: torch.Tensor, w: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gradient with respect to the layer's input ``x`` (whose strides decide autograd's orientation)."""
    if plan.layout == LOOP:
        for i in range(len(w)):
            if _column_major(x[i]):
                out[i].copy_(_one_input_grad(g[i], w[i], x[i]))
            else:
                torch.mm(g[i], w[i], out=out[i])
        return out
    return torch.bmm(g, w.mT if plan.layout == FAST else w, out=out)


def bias_grad(plan: Plan, g: torch.Tensor, out: torch.Tensor) -> None:
    if plan.loop_bias:
        for i in range(len(out)):
            torch.sum(g[i], 0, out=out[i])
    else:
        torch.sum(g, 1, out=out)


_CHOSEN: dict[tuple, Plan] = {}


def choose(m: int, n_in: int, n_out: int, bias: bool, batch_sizes: tuple[int, ...], device: torch.device,
           allow_fast: bool, input_grad_needed: bool) -> Plan:
    """The plan for one Linear layer of ``m`` stacked models trained on these batch sizes."""
    key = (m, n_in, n_out, bias, tuple(sorted(set(batch_sizes))), str(device), allow_fast, input_grad_needed,
           torch.get_num_threads())
    if key not in _CHOSEN:
        gen = torch.Generator().manual_seed(0)  # a private stream: the probe draws nothing from torch's
        data = []
        for batch in key[4]:
            per_model = [batch * n_out, n_out * n_in] + ([n_out] if bias else []) + (
                [batch * n_in] if input_grad_needed else [])
            smallest = min(per_model)
            repeats = -(-PROBE_OUTPUTS // (m * smallest))
            data += [_probe_data(m, n_in, n_out, bias, batch, device, gen) for _ in range(repeats)]
        layouts = ([FAST] if allow_fast else []) + [MIRROR, LOOP]
        layout = next((lay for lay in layouts
                       if all(_agrees(Plan(lay, False), d, input_grad_needed) for d in data)), None)
        exact = layout is not None
        plan = Plan(layout or LOOP, loop_bias=False, exact=exact)
        if bias and not all(_bias_agrees(plan, d) for d in data):
            plan = Plan(plan.layout, loop_bias=True, exact=exact and all(
                _bias_agrees(Plan(plan.layout, True), d) for d in data))
        _CHOSEN[key] = plan
    return _CHOSEN[key]


def _probe_data(m, n_in, n_out, bias, batch, device, gen):
    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    return rand(m, n_out, n_in), (rand(m, n_out) if bias else None), rand(m, batch, n_in), rand(m, batch, n_out)


def _agrees(plan: Plan, data, input_grad_needed: bool) -> bool:
    w, b, x, g = data
    stored = w.mT.contiguous() if plan.transposed else w
    out = torch.empty(*x.shape[:2], w.shape[1], device=w.device)
    forward(plan, x, stored, b, out)
    dw = torch.empty_like(stored)
    weight_grad(plan, g, x, dw)
    ok = True
    for i in range(len(w)):
        # what model i's own run computes, on tensors of its own (as its parameters and activations are)
        wi, xi, gi = w[i].clone(), x[i].clone(), g[i].clone()
        want = torch.mm(xi, wi.t()) if b is None else torch.addmm(b[i].clone(), xi, wi.t())
        ok &= torch.equal(out[i], want)
        ok &= torch.equal(dw[i].t() if plan.transposed else dw[i], torch.mm(gi.t(), xi))
    if input_grad_needed:
        dx = input_grad(plan, g, stored, x, torch.empty_like(x))
        ok &= all(torch.equal(dx[i], _one_input_grad(g[i].clone(), w[i].clone(), x[i].clone()))
                  for i in range(len(w)))
    return bool(ok)


def _bias_agrees(plan: Plan, data) -> bool:
    _, b, _, g = data
    db = torch.empty_like(b)
    bias_grad(plan, g, db)
    return all(torch.equal(db[i], g[i].clone().sum(0)) for i in range(len(b)))
