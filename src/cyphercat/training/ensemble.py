"""Many small models trained at once, each one as :func:`~cyphercat.training.trainer.train_model` would.

LiRA and RMIA need dozens of reference models; training them one at a time leaves a CPU or GPU mostly
waiting on Python. Here the parameters of M models are stacked along a leading axis and trained in one
loop. Element i of the result equals (to float rounding) the ``state_dict()`` of the one-model trainer
run on model i, because every ingredient of that run is kept per model:

* data order: model i draws its per-epoch permutation from its own ``torch.Generator`` seeded with
  ``train_seeds[i]``, batches are consecutive slices of it, the last one partial — as in ``train_model``;
* gradients: the loss is the sum over models of each model's mean batch loss, so model i's gradient is
  exactly the gradient of its own mean loss (models share no parameters);
* optimizer: Adam, AdamW and SGD with momentum/weight decay are elementwise, so one optimizer over the
  stacked tensors does for each slice what a separate optimizer would (:mod:`.stacked_optim` keeps
  the fused kernels' scalar tails per model, and clears subnormal state on the same steps);
* dropout: ``train_model`` runs under ``torch_rng(seed ^ 0x5EED)`` and on CPU ``nn.Dropout`` draws its mask
  as ``empty_like(x).bernoulli_(1 - p)`` from that stream. We draw the same masks from one private
  generator per model, in the same order, so dropout models match too.

Only the floating-point summation order can differ from the one-model run. Linear stacks come out
bitwise equal (also after 300 epochs): where batching could change a sum, :mod:`.linear_plan` checks it
on the spot and otherwise makes the one-model calls model by model. Under ``vmap`` a convolution over M
models becomes one grouped convolution, which sums in another order, and training amplifies that:
``benchmarks/bench_ensemble.py --arch cnn --models 4`` printed a largest weight difference of 1.5e-8
after one epoch of SGD and 9.6e-6 after one of Adam (whose update is about ±lr whatever a gradient's
size, so a near-zero gradient whose sign flips on rounding counts in full), and 3.7 % and 6.7 % of a
weight tensor's scale after 30 epochs. Those are valid draws, but not the one-model trainer's, and on a
CPU they bought no time (0.9-1.0x on 2 cores), so there such nets train one by one unless
``vmap_on_cpu`` asks otherwise. On CUDA, where launching each model's kernels separately is what costs,
they go through vmap (not measured here: no GPU was available).

What cannot be batched falls back to the one-model trainer (still exact, just not faster): modules with
running statistics (batch norm), recurrent layers, hooks, dropout variants other than ``nn.Dropout``,
anything ``vmap`` refuses (data-dependent control flow, random ops we do not control), and dropout on
CUDA — there ``train_model``'s masks come from the fused Philox kernel on the global CUDA generator,
which no per-model generator can replay.

Two engines: stacks of ``Linear``/activation/``Dropout`` layers (every MLP and logistic regression in the
zoo) run through :class:`~cyphercat.training.linear_stack.LinearStack`, batched matmuls with a
hand-written backward pass into preallocated buffers; everything else (on CUDA, or with ``vmap_on_cpu``)
runs through ``torch.func.functional_call`` under ``torch.func.vmap`` with autograd.
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from cyphercat.config import TrainingSpec
from cyphercat.errors import CyphercatError
from cyphercat.training.linear_stack import LinearStack
from cyphercat.training.stacked_optim import StackedOptimizer
from cyphercat.training.trainer import resolve_device, to_tensor, train_model

# train_model runs its loop under torch_rng(seed ^ 0x5EED); the dropout masks come from that stream.
DROPOUT_SEED_MIX = 0x5EED

_OTHER_DROPOUTS = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def can_batch(net: nn.Module, example: torch.Tensor | None = None) -> bool:
    """Whether :func:`train_ensemble` can train copies of ``net`` many-at-once and match ``train_model``.

    Checks the structure (no running statistics, recurrent layers, hooks or unsupported dropout) and,
    when ``example`` (a batch of inputs) is given, that a ``vmap``-ed forward and backward actually run."""
    params = list(net.parameters())
    if not params or any(not p.is_floating_point() for p in params):
        return False
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            return False
        if isinstance(m, (nn.RNNBase, *_OTHER_DROPOUTS)) or _has_hooks(m):
            return False
    if example is None:
        return True
    try:
        engine = _make_engine([net, net], torch.device("cpu"), example[:1].cpu())
        x = engine.prepare(example[:2].cpu())
        x = x.unsqueeze(0).expand(2, *x.shape)
        noise = [torch.ones(2, x.shape[1], *shape) for _, shape in engine.dropouts]
        engine.compute_grads(x, torch.zeros(x.shape[:2], dtype=torch.long), noise)
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return False
    return True


class _Noise(nn.Module):
    """Stands in for ``nn.Dropout`` under vmap: multiplies by a mask handed in as a (stacked) buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("noise", torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.noise


class _VmapEngine:
    """Any batchable module: ``functional_call`` on a skeleton copy, vmapped over the stacked state."""

    def __init__(self, nets: Sequence[nn.Module], device: torch.device, example: torch.Tensor):
        self.nets = nets
        skel = copy.deepcopy(nets[0]).to(device)
        self.dropouts, names = _dropout_calls(skel, example.to(device))
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = skel.get_submodule(parent_name)
            p = float(parent.get_submodule(child).p)
            setattr(parent, child, _Noise() if p > 0 else nn.Identity())
        self.noise_names = [f"{name}.noise" for name, (p, _) in zip(names, self.dropouts, strict=True) if p > 0]
        self.dropouts = [d for d in self.dropouts if d[0] > 0]
        self.skel = skel.train()
        self.names = [n for n, _ in nets[0].named_parameters()]
        self.params = [_stack([dict(n.named_parameters())[k].detach() for n in nets], device,
                              n_req=dict(nets[0].named_parameters())[k]) for k in self.names]
        self.buffers = {k: torch.stack([dict(n.named_buffers())[k] for n in nets]).to(device)
                        for k, _ in nets[0].named_buffers()}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.skel, (params, buffers), (x,))

    def compute_grads(self, xb: torch.Tensor, yb: torch.Tensor, noise: list[torch.Tensor]) -> None:
        for p in self.params:
            p.grad = None
        buffers = {**self.buffers, **dict(zip(self.noise_names, noise, strict=True))}
        logits = vmap(self._call)(dict(zip(self.names, self.params, strict=True)), buffers, xb)
        # sum over models of each model's mean loss: model i's gradient is that of its own mean loss
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="sum") / xb.shape[1]
        loss.backward()

    def write_back(self) -> None:
        with torch.no_grad():
            for i, net in enumerate(self.nets):
                own = dict(net.named_parameters())
                for k, p in zip(self.names, self.params, strict=True):
                    own[k].copy_(p[i])


def _stack(tensors: list[torch.Tensor], device: torch.device, n_req: torch.Tensor) -> torch.Tensor:
    return torch.stack(tensors).to(device).contiguous().requires_grad_(n_req.requires_grad)


def _dropout_calls(net: nn.Module, example: torch.Tensor) -> tuple[list[tuple[float, tuple[int, ...]]], list[str]]:
    """(p, per-record input shape) of each nn.Dropout in the order the forward pass calls them."""
    calls: list[tuple[float, tuple[int, ...]]] = []
    names: list[str] = []
    handles = []
    for name, m in net.named_modules():
        if type(m) is nn.Dropout:
            def hook(mod, args, name=name):
                if name in names:
                    raise ValueError(f"dropout {name} is called twice per forward pass")
                names.append(name)
                calls.append((float(mod.p), tuple(args[0].shape[1:])))
            handles.append(m.register_forward_pre_hook(hook))
    try:
        was_training = net.training
        net.eval()  # eval mode: dropout draws nothing, so the shape probe consumes no randomness
        with torch.no_grad():
            net(example)
        net.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return calls, names


def _make_engine(nets: Sequence[nn.Module], device: torch.device, example: torch.Tensor,
                 batch_sizes: Sequence[int] = (2,)):
    if LinearStack.accepts(nets[0], tuple(example.shape[1:])):
        return LinearStack(nets, device, tuple(example.shape[1:]), batch_sizes)
    return _VmapEngine(nets, device, example)


def _draw_noise(engine, drop_gens: list[torch.Generator], batch: int, device: torch.device) -> list[torch.Tensor]:
    # Mirrors aten's CPU dropout: noise = empty_like(x).bernoulli_(1 - p).div_(1 - p); x * noise.
    # Model by model, layer by layer, as each model's own train_model run would draw them.
    per_model = []
    for g in drop_gens:
        masks = []
        for p, shape in engine.dropouts:
            if p >= 1:
                masks.append(torch.zeros(batch, *shape))
            else:
                masks.append(torch.empty(batch, *shape).bernoulli_(1 - p, generator=g).div_(1 - p))
        per_model.append(masks)
    return [torch.stack(layer).to(device) for layer in zip(*per_model, strict=True)]


def _train_chunk(nets: list[nn.Module], positions: torch.Tensor, seeds: list[int], xu: torch.Tensor,
                 yu: torch.Tensor, training: TrainingSpec, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Train the models of one chunk (all on ``positions.shape[1]`` records) in lock-step."""
    n, bs = positions.shape[1], training.batch_size
    engine = _make_engine(nets, device, xu[:1], [size for size in (min(bs, n), n % bs) if size])
    xe = engine.prepare(xu)
    opt = StackedOptimizer(engine.params, training)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    drop_gens = [torch.Generator().manual_seed(int(s) ^ DROPOUT_SEED_MIX) for s in seeds] if engine.dropouts else []
    steps = -(-n // bs)
    for _epoch in range(training.epochs):
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens])
        order = torch.gather(positions, 1, perm).to(device)
        for b in range(steps):
            idx = order[:, b * bs:(b + 1) * bs]
            noise = _draw_noise(engine, drop_gens, idx.shape[1], device) if drop_gens else []
            flat = idx.reshape(-1)  # index_select: a quarter of the cost of xe[idx] for the same copy
            engine.compute_grads(xe.index_select(0, flat).view(*idx.shape, *xe.shape[1:]),
                                 yu.index_select(0, flat).view(idx.shape), noise)
            opt.step()
    engine.write_back()
    return [net.eval().state_dict() for net in nets]


def _fallback_reason(net: nn.Module, device: torch.device, example: torch.Tensor) -> str | None:
    if not can_batch(net):
        return "it has batch norm, recurrent layers, hooks or an unsupported dropout"
    has_dropout = any(type(m) is nn.Dropout and m.p > 0 for m in net.modules())
    if has_dropout and device.type != "cpu":
        return "its dropout masks on CUDA come from a fused kernel that cannot be replayed per model"
    if not can_batch(net, example):
        return "vmap cannot run its forward pass"
    return None


def train_ensemble(build: Callable[[int], nn.Module], init_seeds: Sequence[int], x: np.ndarray, y: np.ndarray,
                   index_sets: Sequence[np.ndarray], training: TrainingSpec, train_seeds: Sequence[int],
                   device: torch.device | str = "cpu", chunk_size: int | None = None,
                   vmap_on_cpu: bool = False) -> list[dict[str, torch.Tensor]]:
    """Train model i = ``build(init_seeds[i])`` on ``x[index_sets[i]], y[index_sets[i]]`` with data-order
    seed ``train_seeds[i]``; return the trained ``state_dict()`` of each, in order.

    Element i equals ``train_model(build(init_seeds[i]), x[index_sets[i]], y[index_sets[i]], training,
    seed=train_seeds[i], device).state_dict()`` up to float rounding. Models train together in groups of
    equal index-set size (lock-step needs equal steps per epoch), at most ``chunk_size`` at once (memory
    grows linearly with it; None = a whole group). Architectures that cannot be batched are trained one
    at a time with ``train_model``, and so are those that only ``vmap`` could batch when the device is a
    CPU, unless ``vmap_on_cpu``: there it gained nothing (0.9-1.0x for the default ``cnn`` on 2 cores,
    ``benchmarks/bench_ensemble.py --arch cnn``) and its models are not the one-model trainer's."""
    m = len(index_sets)
    if len(init_seeds) != m or len(train_seeds) != m:
        raise CyphercatError("index_sets", f"got {m} index sets, {len(init_seeds)} init seeds and "
                             f"{len(train_seeds)} train seeds", "give one init seed and one train seed per index set")
    if chunk_size is not None and chunk_size < 1:
        raise CyphercatError("chunk_size", f"must be at least 1, got {chunk_size}", "use a positive chunk size or None")
    if len(x) != len(y):
        raise CyphercatError("x", f"{len(x)} records but {len(y)} labels", "give one label per record")
    sets = [np.asarray(s, dtype=np.int64).reshape(-1) for s in index_sets]
    for i, s in enumerate(sets):
        if len(s) == 0:
            raise CyphercatError("splits", f"model {i} was asked to train on zero records", "enlarge the split")
        if s.min() < 0 or s.max() >= len(y):
            raise CyphercatError(f"index_sets[{i}]", f"indices must lie in 0..{len(y) - 1}",
                                 "index records of the given x and y")
    if m == 0:
        return []
    device = resolve_device(device)

    # Put only the records some model uses on the device, once; index sets become positions in it.
    used = np.unique(np.concatenate(sets))
    xu = to_tensor(x[used], device)
    yu = torch.from_numpy(np.asarray(y, dtype=np.int64)[used]).to(device)

    first = build(int(init_seeds[0]))
    if device.type == "cpu" and not vmap_on_cpu and not LinearStack.accepts(first, tuple(xu.shape[1:])):
        reason = ""  # a choice, not a limitation: nothing to warn about
    else:
        reason = _fallback_reason(first, device, xu[:2])
    results: list[dict[str, torch.Tensor] | None] = [None] * m
    if reason is not None:
        if reason:
            warnings.warn(f"train_ensemble: training {type(first).__name__} one model at a time because {reason}",
                          stacklevel=2)
        for i in range(m):
            net = first if i == 0 else build(int(init_seeds[i]))
            results[i] = train_model(net, x[sets[i]], y[sets[i]], training, seed=int(train_seeds[i]),
                                     device=device).state_dict()
        return results

    groups: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        groups[len(s)].append(i)
    shapes = {k: v.shape for k, v in first.state_dict().items()}
    for members in groups.values():
        step = chunk_size or len(members)
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            nets = [first if i == 0 else build(int(init_seeds[i])) for i in chunk]
            for i, net in zip(chunk, nets, strict=True):
                if {k: v.shape for k, v in net.state_dict().items()} != shapes:
                    raise CyphercatError("model", f"build({init_seeds[i]}) returned a different architecture "
                                         f"than build({init_seeds[0]})", "make build's architecture independent of the seed")
            if len(chunk) == 1:
                i = chunk[0]
                results[i] = train_model(nets[0], x[sets[i]], y[sets[i]], training, seed=int(train_seeds[i]),
                                         device=device).state_dict()
                continue
            positions = torch.from_numpy(np.stack([np.searchsorted(used, sets[i]) for i in chunk]))
            trained = _train_chunk([n.to(device) for n in nets], positions, [int(train_seeds[i]) for i in chunk],
                                   xu, yu, training, device)
            for i, sd in zip(chunk, trained, strict=True):
                results[i] = sd
    return results
