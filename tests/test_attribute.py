"""Attribute inference: the inference rule on hand-made models, the membership advantage on a
synthetic tabular audit (and none when the target never saw the members), and bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cyphercat.attacks.attribute import attribute_prior, infer_attribute, summarise
from cyphercat.attacks.base import make_attack
from cyphercat.config import spec_from_dict
from cyphercat.data.builtin import digits, synthetic
from cyphercat.data.splits import plan_splits
from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import build_model
from cyphercat.seeding import Seeds
from cyphercat.target import Model
from cyphercat.training.trainer import train_model

pytestmark = pytest.mark.usefixtures("one_thread")


def copies_feature0(x: np.ndarray) -> np.ndarray:
    """A model that predicts class x[:, 0] (0 or 1) with confidence growing in |x[:, 1]|."""
    z = (2 * x[:, 0] - 1) * (1 + np.abs(x[:, 1]))
    logits = np.stack([-z, z], 1)
    return logits - np.logaddexp(logits[:, :1], logits[:, 1:])


def test_recovers_an_attribute_the_model_depends_on():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    x[:, 0] = rng.integers(0, 2, 200)
    y = x[:, 0].astype(np.int64)
    values = np.array([0.0, 1.0])
    log_prior = np.log([0.7, 0.3])  # a prior that points the wrong way for a third of the records
    hidden = x.copy()
    hidden[:, 0] = -5.0  # the attack must not read the column it infers
    for method in ("loss", "fredrikson"):
        guess, scores = infer_attribute(copies_feature0, hidden, y, 0, values, log_prior, method)
        if method == "fredrikson":  # it sees the output on the true record, as the paper's attacker does
            guess, _ = infer_attribute(copies_feature0, x, y, 0, values, log_prior, method)
        assert (values[guess] == x[:, 0]).all() and scores.shape == (200, 2)


def test_an_uninformative_model_leaves_only_the_prior():
    x = np.random.default_rng(1).standard_normal((50, 4))
    flat = lambda z: np.full((len(z), 3), -np.log(3))  # noqa: E731
    log_prior = attribute_prior(np.array([0, 1, 1, 1, 2.0]), np.array([0.0, 1.0, 2.0]))
    guess, _ = infer_attribute(flat, x, np.zeros(50, np.int64), 2, np.array([0.0, 1.0, 2.0]), log_prior)
    assert (guess == 1).all()


def test_summary_and_its_intervals():
    rng = np.random.default_rng(0)
    cm, pm = rng.random(300) < 0.8, (rng.random(300) < 0.5).astype(float)
    cn, pn = rng.random(300) < 0.6, (rng.random(300) < 0.5).astype(float)
    s = summarise(cm, pm, cn, pn, 200, 0.95, np.random.default_rng(0))
    assert s["membership_advantage"] == pytest.approx((cm.mean() - pm.mean()) - (cn.mean() - pn.mean()))
    for key in ("attribute_advantage", "membership_advantage"):
        lo, hi = s[f"{key}_ci"]
        assert lo <= s[key] <= hi
    assert s["attribute_advantage_ci"][0] > 0


def make_ctx(members_seen: bool = True, **data):
    ds = synthetic(**{"sensitive_feature": 0, "sensitive_strength": 1.5, **data})
    spec = spec_from_dict({"dataset": {"name": "synthetic"}})
    seeds = Seeds(0)
    plan = plan_splits(len(ds), spec.splits, seeds.numpy("split"))
    train_idx = plan.members if members_seen else plan.shadow_in
    net = build_model("mlp", {"hidden": [512]}, ds.input_shape, ds.num_classes, seeds.int("target", "init"))
    train_model(net, ds.x[train_idx], ds.y[train_idx], spec.target.training, seeds.int("target", "train"))
    return SimpleNamespace(spec=spec, seeds=seeds, device=torch.device("cpu"), dataset=ds, plan=plan,
                           target=Model(net), out_dir=None, evaluation_id="none")


@pytest.fixture(scope="module")
def synthetic_runs():
    return {seen: make_attack("attribute", {}, random_state=0).run(make_ctx(seen)) for seen in (True, False)}


def test_members_leak_their_attribute_more_than_nonmembers(synthetic_runs):
    out = synthetic_runs[True]
    json.dumps(out, allow_nan=False)
    assert out["feature"] == 0 and out["values"] == [0.0, 1.0] and out["prior_from"] == "population"
    m, n = out["members"], out["nonmembers"]
    # both beat the prior-only guess (the attribute is correlated with the label) ...
    assert m["advantage_over_prior_ci"][0] > 0.1 and n["advantage_over_prior_ci"][0] > 0
    # ... but members by more: the model remembers their attribute
    assert m["advantage_over_prior"] > n["advantage_over_prior"]
    assert out["membership_advantage_ci"][0] > 0 and out["attribute_advantage_ci"][0] > 0


def test_no_membership_advantage_when_the_target_never_saw_the_members(synthetic_runs):
    out = synthetic_runs[False]
    lo, hi = out["membership_advantage_ci"]
    assert lo < 0 < hi
    assert out["nonmembers"]["advantage_over_prior_ci"][0] > 0  # population statistics still give something


def test_black_box_target_is_enough():
    ctx = make_ctx(n_samples=1400, n_features=20)
    white = ctx.target
    ctx.target = Model(predict_proba=lambda x: np.exp(white.log_probs(x)))
    out = make_attack("attribute", {"method": "fredrikson"}, random_state=0).run(ctx)
    assert 0 <= out["members"]["accuracy"] <= 1 and out["method"] == "fredrikson"


def test_bad_input():
    ctx = make_ctx(n_samples=1400, n_features=20)
    with pytest.raises(CyphercatError, match="feature.*outside 0..19"):
        make_attack("attribute", {"feature": 20}, random_state=0).run(ctx)
    with pytest.raises(CyphercatError, match="continuous"):
        make_attack("attribute", {"feature": 3}, random_state=0).run(ctx)
    with pytest.raises(CyphercatError, match="method"):
        make_attack("attribute", {"method": "oracle"}, random_state=0).run(ctx)
    plain = SimpleNamespace(**{**vars(ctx), "dataset": ctx.dataset.replace(extra={})})
    with pytest.raises(CyphercatError, match="no sensitive column"):
        make_attack("attribute", {}, random_state=0).run(plain)
    images = SimpleNamespace(**{**vars(ctx), "dataset": digits()})
    with pytest.raises(CyphercatError, match="tabular"):
        make_attack("attribute", {"feature": 0}, random_state=0).run(images)
