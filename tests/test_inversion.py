"""MI-Face model inversion: stopping rules, valid range, recovery of constant images, black-box
gradients, and the attack run on a small digits audit (with a stand-in for the audit context)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cyphercat.attacks.base import make_attack
from cyphercat.attacks.inversion import mi_face, mi_face_batch
from cyphercat.config import TrainingSpec, spec_from_dict
from cyphercat.data.builtin import digits
from cyphercat.data.splits import plan_splits
from cyphercat.errors import CyphercatError
from cyphercat.inversion_metrics import class_distances, ssim
from cyphercat.models.zoo import build_model
from cyphercat.seeding import Seeds, torch_rng
from cyphercat.target import Model
from cyphercat.training.trainer import train_model

LEVELS = np.array([0.2, 0.5, 0.8])


pytestmark = pytest.mark.usefixtures("one_thread")


def linear(weights: np.ndarray) -> nn.Module:
    """A softmax-linear model with fixed weights over flattened inputs."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    net = nn.Sequential(nn.Flatten(), nn.Linear(w.shape[1], w.shape[0]))
    with torch.no_grad():
        net[1].weight.copy_(w)
        net[1].bias.zero_()
    return net.eval()


def log_probs_of(net: nn.Module):
    """A probabilities-only view of ``net``: numpy in, log-probabilities out, no gradients."""
    def query(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.log_softmax(net(torch.as_tensor(x, dtype=torch.float32)), 1).numpy()
    return query


@pytest.fixture(scope="module")
def constant_net():
    """An MLP trained on three classes of (nearly) constant 8×8 images at 0.2, 0.5 and 0.8."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = (LEVELS[y][:, None, None, None] + 0.03 * rng.standard_normal((len(y), 1, 8, 8))).clip(0, 1)
    net = build_model("mlp", {"hidden": [32]}, (1, 8, 8), 3, seed=0)
    return train_model(net, x.astype(np.float32), y, TrainingSpec(epochs=60, batch_size=32, lr=1e-2), seed=0)


def test_stops_after_alpha_iterations():
    net = linear(np.array([[0.01] * 4, [-0.01] * 4]))
    x, cost, iters, reason = mi_face(net, 0, np.zeros(4), (-10, 10), alpha=5, beta=1000, gamma=0.0, lam=0.1)
    assert (iters, reason) == (5, "max_iterations")


def test_stops_when_cost_reaches_gamma_and_not_before():
    net = linear(np.array([[1.0] * 4, [-1.0] * 4]))
    x, cost, iters, reason = mi_face(net, 0, np.zeros(4), (-10, 10), alpha=1000, beta=1000, gamma=0.05, lam=0.1)
    assert reason == "cost" and cost <= 0.05 and 1 < iters < 1000
    # one step fewer and the cost is still above γ: the rule fired at the first iterate below it
    _, cost_before, _, reason_before = mi_face(net, 0, np.zeros(4), (-10, 10), alpha=iters - 1, beta=1000,
                                               gamma=0.05, lam=0.1)
    assert reason_before == "max_iterations" and cost_before > 0.05


def test_stops_after_beta_steps_without_improvement():
    net = linear(np.zeros((3, 4)))  # output ignores the input: the cost never improves
    x, cost, iters, reason = mi_face(net, 1, np.zeros(4), (0, 1), alpha=1000, beta=7, gamma=0.0)
    assert (iters, reason) == (7, "no_improvement")
    assert cost == pytest.approx(2 / 3)


def test_returns_the_best_iterate_and_its_cost():
    net = linear(np.array([[3.0, -1.0, 0.5, 0.0], [-3.0, 1.0, -0.5, 0.0]]))
    x, cost, _, _ = mi_face(net, 1, np.full(4, 0.5), (0, 1), alpha=50, beta=10, gamma=0.0, lam=5.0)
    p = np.exp(log_probs_of(net)(x[None]))[0, 1]
    assert cost == pytest.approx(1 - p, abs=1e-6)


def test_keeps_inputs_in_the_valid_range():
    # class 0 grows without bound with every pixel, class 1 shrinks: unconstrained descent would leave the range
    net = linear(np.array([[1.0] * 16, [-1.0] * 16]))
    x, _, _, _, _ = mi_face_batch(net, [0, 1], np.zeros((2, 1, 4, 4)), (-0.5, 0.25), alpha=200, gamma=0.0, lam=2.0)
    assert x.min() >= -0.5 and x.max() <= 0.25
    assert np.allclose(x[0], 0.25) and np.allclose(x[1], -0.5)


def test_inversion_recovers_constant_images(constant_net):
    x0 = np.full((3, 1, 8, 8), 0.5, np.float32)
    x, cost, _, _, _ = mi_face_batch(constant_net, [0, 1, 2], x0, (0, 1), lam=1.0, process="denoise")
    means = x.mean(axis=(1, 2, 3))
    assert (np.abs(means[:, None] - LEVELS[None]).argmin(1) == [0, 1, 2]).all()
    assert abs(means[0] - 0.2) < 0.05 and abs(means[1] - 0.5) < 0.05 and means[2] > 0.75
    assert x.std(axis=(1, 2, 3)).max() < 0.05  # constant, not salt and pepper with the right mean
    for c in range(3):
        own = ((x[c] - LEVELS[c]) ** 2).mean()
        assert all(own < ((x[c] - v) ** 2).mean() for k, v in enumerate(LEVELS) if k != c)


def test_black_box_finite_differences_match_autograd(constant_net):
    x0 = np.full((3, 1, 8, 8), 0.5, np.float32)
    kw = dict(alpha=1, beta=10, gamma=0.0, lam=0.05)
    white, *_ = mi_face_batch(constant_net, [0, 1, 2], x0, (0, 1), **kw)
    black, _, _, _, queries = mi_face_batch(log_probs_of(constant_net), [0, 1, 2], x0, (0, 1), **kw)
    assert np.abs(white - black).max() < 1e-3 and np.abs(white - x0).max() > 1e-3
    assert queries == 3 * (2 * 64 + 1) + 3  # per step: 2·D perturbed queries + the cost; then the last cost


@pytest.mark.parametrize("estimator", ["finite_difference", "zeroth_order"])
def test_black_box_inverts_a_probabilities_only_target(constant_net, estimator):
    query = log_probs_of(constant_net)
    x0 = np.full((3, 1, 8, 8), 0.5, np.float32)
    x, cost, _, _, _ = mi_face_batch(query, [0, 1, 2], x0, (0, 1), lam=1.0, process="denoise", estimator=estimator,
                                     n_directions=64, rng=np.random.default_rng(0))
    p = np.exp(query(x))
    assert (p.argmax(1) == [0, 1, 2]).all()
    means = x.mean(axis=(1, 2, 3))
    assert (np.abs(means[:, None] - LEVELS[None]).argmin(1) == [0, 1, 2]).all()


def test_ssim_and_distances():
    rng = np.random.default_rng(0)
    a = rng.random((1, 8, 8))
    assert ssim(a, a, 1.0) == pytest.approx(1.0)
    assert ssim(a, rng.random((1, 8, 8)), 1.0) < 0.5
    x = np.stack([a, a + 0.5, a, a + 0.5])
    y = np.array([0, 0, 0, 0])
    d = class_distances(a, 0, x, y, np.array([0, 1]), np.array([2, 3]), 1.0, rng)
    assert d["mse_nearest_member"] == pytest.approx(0.0) and d["nearest_member"] == 0
    assert d["mse_member_mean"] == pytest.approx(0.0625)


# ---- the attack on a (small) digits audit --------------------------------------------------------

def make_ctx(tmp_path, epochs: int = 60, black_box_target: bool = False, evaluation_id: str = "none"):
    ds = digits()
    spec = spec_from_dict({"target": {"training": {"epochs": epochs}}})
    seeds = Seeds(0)
    plan = plan_splits(len(ds), spec.splits, seeds.numpy("split"))
    memo = {}

    def train(role, idx, model_training=None, *, attacker=True, defended=True):
        mt = model_training or spec.target
        key = (role, mt.model.name)
        if key not in memo:
            net = build_model(mt.model.name, mt.model.params, ds.input_shape, ds.num_classes, seeds.int(role, "i"))
            memo[key] = train_model(net, ds.x[idx], ds.y[idx], mt.training, seeds.int(role, "t"))
        return Model(memo[key])

    target = white = train("target", plan.members)
    if black_box_target:
        target = Model(predict_proba=lambda x: np.exp(white.log_probs(x)))
    return SimpleNamespace(spec=spec, seeds=seeds, device=torch.device("cpu"), dataset=ds, plan=plan, target=target,
                           train_model=train, out_dir=tmp_path, evaluation_id=evaluation_id)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    ctx = make_ctx(tmp_path_factory.mktemp("inv"))
    with torch_rng(0):
        out = make_attack("inversion", {}, random_state=0).run(ctx)
    return ctx, out


def test_inverted_digits_are_recognised_by_the_evaluation_classifier(digits_run):
    ctx, out = digits_run
    json.dumps(out, allow_nan=False)  # JSON-able: plain floats, ints, lists, strings
    assert out["image"] == "inversion.png" and (ctx.out_dir / "inversion.png").stat().st_size > 1000
    assert len(out["per_class"]) == 10 and out["chance"] == 0.1
    assert out["evaluator"]["accuracy_on_candidates"] > 0.9
    assert out["average"]["evaluator_accuracy"] >= 0.7  # chance is 0.1
    assert out["average"]["target_confidence"] > 0.99
    assert out["baseline"]["trained_on"] == "shadow_in" and len(out["baseline"]["per_class"]) == 10
    assert out["average"]["ssim_member_mean"] > 0.3  # unrelated 8×8 digits score about 0


def test_black_box_target_needs_the_flag(tmp_path):
    ctx = make_ctx(tmp_path, epochs=5, black_box_target=True, evaluation_id="round-decimals=2")
    with pytest.raises(CyphercatError, match="black_box"):
        make_attack("inversion", {}, random_state=0).run(ctx)
    out = make_attack("inversion", {"black_box": True, "classes": [0, 1], "alpha": 20, "baseline": False},
                      random_state=0).run(ctx)
    assert out["gradients"] == "finite_difference" and out["average"]["queries"] > 20 * 2 * 64
    assert out["image"] == "inversion_round-decimals=2.png"
    assert (tmp_path / out["image"]).exists()


def test_bad_input(tmp_path):
    ctx = make_ctx(tmp_path, epochs=1)
    with pytest.raises(CyphercatError, match="classes"):
        make_attack("inversion", {"classes": [3, 10]}, random_state=0).run(ctx)
    with pytest.raises(CyphercatError, match="prior"):
        make_attack("inversion", {"prior": "gaussian", "baseline": False}, random_state=0).run(ctx)
    text = ctx.dataset.replace(x=np.zeros((len(ctx.dataset), 5), np.int64), modality="text")
    with pytest.raises(CyphercatError, match="text"):
        make_attack("inversion", {}, random_state=0).run(SimpleNamespace(**{**vars(ctx), "dataset": text}))


def test_white_box_inversion_behind_an_output_defense_fails_before_training(tmp_path):
    from cyphercat.cache import ModelCache
    from cyphercat.config import spec_from_dict
    from cyphercat.pipeline import run_audit

    cache = ModelCache(tmp_path / "cache")
    spec = spec_from_dict({"attacks": ["inversion"], "reference_models": 0, "defenses": ["labels_only"]})
    with pytest.raises(CyphercatError, match="labels_only defense.*black_box: true"):
        run_audit(spec, tmp_path / "out", cache=cache)
    assert cache.misses == 0 and not (tmp_path / "out").exists()
