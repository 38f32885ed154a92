"""The ensemble trainer must give each model what the one-model trainer gives it, only faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from cyphercat.config import TrainingSpec
from cyphercat.data.base import load_dataset
from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import build_model
from cyphercat.training.ensemble import can_batch, train_ensemble
from cyphercat.training.linear_stack import LinearStack
from cyphercat.training.trainer import train_model

SHAPE, CLASSES = (1, 8, 8), 10
ADAM = TrainingSpec(optimizer="adam", lr=1e-3, epochs=3, batch_size=32)
SGD = TrainingSpec(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, epochs=3, batch_size=32)
ADAMW = TrainingSpec(optimizer="adamw", lr=1e-3, weight_decay=0.05, epochs=3, batch_size=32)

ARCHS = {
    "mlp": ("mlp", {"hidden": [32]}),
    "mlp2_dropout": ("mlp", {"hidden": [32, 16], "dropout": 0.3}),
    "logreg": ("logreg", {}),
    "cnn": ("cnn", {"channels": [4, 8], "hidden": 16}),
    "cnn_dropout": ("cnn", {"channels": [4, 8], "hidden": 16, "dropout": 0.5}),
}


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", {})
    return ds.x[:240], ds.y[:240]


def builder(arch: str):
    name, params = ARCHS[arch]
    return lambda s: build_model(name, params, SHAPE, CLASSES, seed=s)


def one_by_one(build, init_seeds, x, y, sets, training, train_seeds):
    return [train_model(build(i), x[s], y[s], training, seed=t).state_dict()
            for i, s, t in zip(init_seeds, sets, train_seeds, strict=True)]


def assert_same(got, want, atol=1e-6, rtol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k].shape == w[k].shape, k
            assert torch.allclose(g[k], w[k], atol=atol, rtol=rtol), (k, (g[k] - w[k]).abs().max().item())


def assert_identical(got, want):
    for g, w in zip(got, want, strict=True):
        for k in w:
            assert torch.equal(g[k], w[k]), (k, (g[k] - w[k]).abs().max().item())


def random_sets(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(n, size, replace=False) for size in sizes]


# Linear stacks sum exactly as the one-model run does (linear_plan checks it): equality, not closeness.
# The conv nets below go through vmap, which is only close (the ensemble module's docstring says why).
BITWISE = {"mlp", "mlp2_dropout", "logreg"}

CASES = [(arch, opt) for arch in ("mlp", "logreg", "cnn") for opt in ("adam", "sgd")]
CASES += [("mlp", "adamw"), ("mlp2_dropout", "sgd"), ("mlp2_dropout", "adam"), ("cnn_dropout", "adam")]


@pytest.mark.parametrize(("arch", "opt"), CASES)
def test_matches_one_model_trainer(digits, arch, opt, recwarn):
    training = {"adam": ADAM, "sgd": SGD, "adamw": ADAMW}[opt]
    x, y = digits
    build = builder(arch)
    sets = random_sets([96, 96, 96], len(y))
    init, order = [3, 4, 5], [30, 31, 32]
    got = train_ensemble(build, init, x, y, sets, training, order, vmap_on_cpu=True)
    assert not [w for w in recwarn if "one model at a time" in str(w.message)], "took the fallback path"
    want = one_by_one(build, init, x, y, sets, training, order)
    assert_same(got, want)
    if arch in BITWISE:
        assert_identical(got, want)
    # training moved the weights: equality is not two untouched initialisations
    start = build(3).state_dict()
    assert max((got[0][k] - start[k]).abs().max().item() for k in start) > 1e-3


class Wide(nn.Sequential):
    """Every activation the hand-written backward knows, a bias-free layer, and per-model sizes that are
    not multiples of 64 (the fused optimizer's scalar tail must land on the same elements)."""

    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(64, 7), nn.Sigmoid(), nn.Linear(7, 9, bias=False), nn.SiLU(),
                         nn.Linear(9, 11), nn.LeakyReLU(0.1), nn.Dropout(0.2), nn.Linear(11, 13), nn.Tanh(),
                         nn.Identity(), nn.Linear(13, 12), nn.GELU(approximate="tanh"), nn.Linear(12, 10),
                         nn.ReLU(inplace=True), nn.ReLU(), nn.Linear(10, 10))


@pytest.mark.parametrize("training", [ADAM, ADAMW, SGD], ids=["adam", "adamw", "sgd"])
def test_linear_stack_is_bitwise_equal_for_every_activation(digits, training, recwarn):
    x, y = digits

    def build(s):
        torch.manual_seed(s)  # test-only model factory; library code never seeds the global RNG
        return Wide()

    assert LinearStack.accepts(build(0), SHAPE)
    state = torch.get_rng_state()
    sets = random_sets([96, 96, 96], len(y), seed=5)
    got = train_ensemble(build, [3, 4, 5], x, y, sets, training, [30, 31, 32])
    assert not [w for w in recwarn if "one model at a time" in str(w.message)]
    want = one_by_one(build, [3, 4, 5], x, y, sets, training, [30, 31, 32])
    torch.set_rng_state(state)
    assert_identical(got, want)
    assert not torch.equal(got[0]["1.weight"], build(3).state_dict()["1.weight"])


def test_different_index_set_sizes(digits):
    x, y = digits
    build = builder("mlp")
    sets = random_sets([64, 40, 64, 30, 40], len(y), seed=1)  # 30 trains alone; the rest in pairs
    init, order = [1, 2, 3, 4, 5], [11, 12, 13, 14, 15]
    got = train_ensemble(build, init, x, y, sets, ADAM, order)
    assert_same(got, one_by_one(build, init, x, y, sets, ADAM, order))


def test_chunking_and_determinism(digits):
    x, y = digits
    build = builder("mlp2_dropout")
    sets = random_sets([64] * 3, len(y), seed=2)
    init, order = [7, 8, 9], [0, 1, 2]
    a = train_ensemble(build, init, x, y, sets, SGD, order)
    b = train_ensemble(build, init, x, y, sets, SGD, order)
    for sa, sb in zip(a, b, strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    chunked = train_ensemble(build, init, x, y, sets, SGD, order, chunk_size=2)
    assert_same(chunked, a)
    # different data-order seeds give different models
    other = train_ensemble(build, init, x, y, sets, SGD, [5, 6, 7])
    assert not torch.allclose(other[0]["1.weight"], a[0]["1.weight"])


def test_global_rng_untouched(digits):
    x, y = digits
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()  # noqa: NPY002 -- checking the global state is the point
    train_ensemble(builder("mlp2_dropout"), [1, 2], x, y, random_sets([60, 60], len(y)), ADAM, [1, 2])
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)  # noqa: NPY002


class WithBatchNorm(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.a(x) if x.sum() > 0 else self.b(x)


def test_can_batch():
    x = torch.zeros(2, *SHAPE)
    for arch in ARCHS:
        assert can_batch(builder(arch)(0), x), arch
    assert not can_batch(WithBatchNorm())
    assert not can_batch(nn.LSTM(8, 8))
    assert not can_batch(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout2d(0.5)))
    hooked = builder("mlp")(0)
    hooked[1].register_forward_hook(lambda *a: None)
    assert not can_batch(hooked)
    assert can_batch(Branchy())  # the structure looks fine ...
    assert not can_batch(Branchy(), x)  # ... but vmap cannot run it


@pytest.mark.parametrize("make", [WithBatchNorm, Branchy], ids=["batchnorm", "control_flow"])
def test_fallback_trains_one_at_a_time(digits, make):
    x, y = digits

    def build(s):
        torch.manual_seed(s)  # test-only model factory; library code never seeds the global RNG
        return make()

    sets = random_sets([64, 64], len(y), seed=3)
    state = torch.get_rng_state()
    with pytest.warns(UserWarning, match="one model at a time"):
        got = train_ensemble(build, [1, 2], x, y, sets, ADAM, [5, 6], vmap_on_cpu=True)
    want = one_by_one(build, [1, 2], x, y, sets, ADAM, [5, 6])
    torch.set_rng_state(state)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        assert all(torch.equal(g[k], w[k]) for k in w)


def test_conv_nets_on_cpu_train_one_at_a_time_quietly_and_exactly(digits, recwarn):
    """vmap buys no time on a CPU (bench_ensemble.py --arch cnn) and its models are not the one-model
    trainer's, so by default a CPU trains them one by one: bit-identical, and nothing to warn about."""
    x, y = digits
    build = builder("cnn")
    sets = random_sets([96, 96], len(y), seed=7)
    got = train_ensemble(build, [3, 4], x, y, sets, ADAM, [30, 31])
    assert not [w for w in recwarn if "one model at a time" in str(w.message)]
    assert_identical(got, one_by_one(build, [3, 4], x, y, sets, ADAM, [30, 31]))


def test_bad_input(digits):
    x, y = digits
    build = builder("logreg")
    with pytest.raises(CyphercatError, match="init seed"):
        train_ensemble(build, [1], x, y, random_sets([10, 10], len(y)), ADAM, [1, 2])
    with pytest.raises(CyphercatError, match="zero records"):
        train_ensemble(build, [1], x, y, [np.array([], dtype=int)], ADAM, [1])
    with pytest.raises(CyphercatError, match="index_sets"):
        train_ensemble(build, [1], x, y, [np.array([0, len(y)])], ADAM, [1])
    with pytest.raises(CyphercatError, match="chunk_size"):
        train_ensemble(build, [1], x, y, [np.arange(10)], ADAM, [1], chunk_size=0)
    assert train_ensemble(build, [], x, y, [], ADAM, []) == []


@pytest.mark.slow
def test_full_training_matches(digits):
    """The contract at the default length: 300 epochs of the default MLP, bit for bit."""
    x, y = digits
    build = lambda s: build_model("mlp", {"hidden": [512]}, SHAPE, CLASSES, seed=s)  # noqa: E731
    sets = random_sets([120] * 4, len(y), seed=4)
    training = TrainingSpec(epochs=300)
    got = train_ensemble(build, [1, 2, 3, 4], x, y, sets, training, [5, 6, 7, 8])
    assert_identical(got, one_by_one(build, [1, 2, 3, 4], x, y, sets, training, [5, 6, 7, 8]))


def test_linear_stack_declines_what_it_would_train_differently():
    frozen = builder("mlp")(0)
    frozen[1].weight.requires_grad_(False)
    assert not LinearStack.accepts(frozen, SHAPE)
    leaky = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.LeakyReLU(0.1, inplace=True), nn.Linear(8, 10))
    assert not LinearStack.accepts(leaky, SHAPE)
    relu = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(inplace=True), nn.Linear(8, 10))
    assert LinearStack.accepts(relu, SHAPE)
    assert not LinearStack.accepts(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(1)), SHAPE)


def test_frozen_layer_stays_frozen(digits):
    x, y = digits

    def build(s):
        net = builder("mlp")(s)
        net[1].weight.requires_grad_(False)
        return net

    sets = random_sets([96, 96], len(y), seed=6)
    got = train_ensemble(build, [1, 2], x, y, sets, ADAM, [3, 4])
    assert torch.equal(got[0]["1.weight"], build(1).state_dict()["1.weight"])
    assert_same(got, one_by_one(build, [1, 2], x, y, sets, ADAM, [3, 4]))


# ---- any Linear stack, any optimizer: bit for bit ---------------------------------------------------
ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, lambda: nn.LeakyReLU(0.2), nn.Identity]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(1, 40), min_size=0, max_size=3),
       acts=st.lists(st.integers(0, len(ACTIVATIONS) - 1), min_size=3, max_size=3),
       bias=st.booleans(), dropout=st.sampled_from([0.0, 0.25]),
       opt=st.sampled_from(["adam", "adamw", "sgd"]), batch=st.integers(1, 64), size=st.integers(2, 90),
       models=st.integers(2, 5))
def test_any_linear_stack_matches_bit_for_bit(digits, widths, acts, bias, dropout, opt, batch, size, models):
    x, y = digits
    training = {"adam": ADAM, "sgd": SGD, "adamw": ADAMW}[opt].model_copy(update={"batch_size": batch})

    def build(s):
        torch.manual_seed(s)  # test-only model factory; library code never seeds the global RNG
        layers, width = [nn.Flatten()], 64
        for w, a in zip(widths, acts, strict=False):
            layers += [nn.Linear(width, w, bias=bias), ACTIVATIONS[a]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = w
        return nn.Sequential(*layers, nn.Linear(width, CLASSES, bias=bias))

    assert LinearStack.accepts(build(0), SHAPE)
    state = torch.get_rng_state()
    sets = random_sets([size] * models, len(y), seed=size)
    init, order = list(range(1, models + 1)), list(range(10, 10 + models))
    got = train_ensemble(build, init, x, y, sets, training, order)
    want = one_by_one(build, init, x, y, sets, training, order)
    torch.set_rng_state(state)
    assert_identical(got, want)
