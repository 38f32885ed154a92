"""Defenses: each one trains/wraps as documented, and on a deliberately vulnerable synthetic setting
the audit shows what it buys back (DP-SGD at small ε, labels-only, top-1, MemGuard)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cyphercat.cache import ModelCache
from cyphercat.config import TrainingSpec, spec_from_dict
from cyphercat.data.builtin import synthetic
from cyphercat.defenses.base import DefenseData, make_defense
from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import build_model, model
from cyphercat.pipeline import run_audit
from cyphercat.target import Model

SCORE_ATTACKS = ("loss", "confidence")


@model("test_buffered_scale", ("tabular",), "MLP with a trainable layer that keeps a buffer (Opacus cannot fix it)")
def _buffered(input_shape, num_classes):
    class Scale(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            return x * self.weight

    return nn.Sequential(nn.Flatten(), Scale(int(np.prod(input_shape))), nn.Linear(int(np.prod(input_shape)), num_classes))


@model("test_bn_mlp", ("tabular",), "MLP with BatchNorm (ModuleValidator.fix turns it into GroupNorm)")
def _bn_mlp(input_shape, num_classes):
    n = int(np.prod(input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, num_classes))


def _spec(defenses, **over):
    data = {
        "seed": 0, "device": "cpu", "shadow_dataset": None, "reference_models": 0,
        "dataset": {"name": "synthetic", "params": {"n_samples": 1000, "n_features": 100, "n_classes": 10}},
        "splits": {"target_members": 150, "target_nonmembers": 150, "shadow_members": 150, "shadow_nonmembers": 150},
        "target": {"model": {"name": "mlp", "params": {"hidden": [256]}}, "training": {"epochs": 100, "batch_size": 64}},
        "attacks": [*SCORE_ATTACKS, "label_only", "gap"], "defenses": defenses, "metrics": {"bootstrap": 100},
    }
    return spec_from_dict({**data, **over})


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    spec = _spec([{"name": "dp_sgd", "params": {"epsilon": 0.5, "epochs": 15, "batch_size": 150}},
                  "labels_only", {"name": "top_k", "params": {"k": 1}}, "memguard"])
    cache = ModelCache(tmp_path_factory.mktemp("cache"), enabled=True)
    return run_audit(spec, cache=cache, write_reports=False)


def _ev(result, id_):
    return next(e for e in result.evaluations if e.id == id_)


def _att(ev, name):
    return next(a for a in ev.attacks if a.name == name).metrics


def test_setting_is_vulnerable_and_dp_sgd_at_small_epsilon_removes_it(audit):
    rows = {r["id"]: r for r in audit.scorecard}
    base, dp = rows["none"], rows["dp_sgd-batch_size=150,epochs=15,epsilon=0.5"]
    assert base["auc_ci"][0] > 0.9  # the undefended target leaks: CI far above 0.5
    assert dp["auc_ci"][0] <= 0.5 <= dp["auc_ci"][1]  # best attack's CI covers chance
    assert 0 < dp["epsilon"] <= 0.5 + 1e-6  # ε from the accountant, recorded
    ev = _ev(audit, dp["id"])
    assert ev.defense["stage"] == "training" and ev.defense["delta"] == pytest.approx(1 / 150)
    assert ev.attacker_knows_defense is True


def test_labels_only_defeats_score_attacks_but_not_label_only(audit):
    base, lo = _ev(audit, "none"), _ev(audit, "labels_only")
    gap = _att(lo, "gap").auc
    for name in SCORE_ATTACKS:
        assert _att(base, name).auc > 0.95
        # a score attack on one-hot outputs can do no better than "is the label right"
        assert _att(lo, name).auc <= gap + 0.01
        assert _att(lo, name).tpr_at_fpr["0.01"] == 0.0
    label_only = _att(lo, "label_only")
    assert label_only.auc_ci[0] > 0.5 and label_only.auc > max(_att(lo, n).auc for n in SCORE_ATTACKS) + 0.05
    assert lo.target["test_accuracy"] == base.target["test_accuracy"]


def test_top_1_leaves_label_only_leakage(audit):
    top1 = _ev(audit, "top_k-k=1")
    assert _att(top1, "label_only").auc_ci[0] > 0.5
    assert _att(top1, "loss").auc < _att(_ev(audit, "none"), "loss").auc


def test_memguard_keeps_labels_and_lowers_score_leakage(audit):
    base, mg = _ev(audit, "none"), _ev(audit, "memguard")
    assert mg.target == base.target  # same labels -> same train and test accuracy
    assert _att(mg, "loss").auc < _att(base, "loss").auc - 0.05


# ---- unit checks ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    ds = synthetic(n_samples=400, n_features=20, n_classes=4, n_informative=8)
    build = lambda s: build_model("mlp", {"hidden": [32]}, (20,), 4, seed=s)  # noqa: E731
    aux = DefenseData(ds.x[200:300], ds.y[200:300], ds.x[300:350], ds.y[300:350], build, 4, "tabular",
                      training=TrainingSpec(epochs=20, batch_size=32))
    return ds, aux


TRAINING = [("dp_sgd", {"epsilon": 4.0, "epochs": 3}), ("label_smoothing", {}), ("weight_decay", {}),
            ("dropout", {}), ("early_stopping", {"patience": 2}), ("adversarial_regularization", {}),
            ("distillation", {}), ("relaxloss", {"alpha": 0.5})]


@pytest.mark.parametrize("name,params", TRAINING)
def test_training_defense_is_deterministic_and_cacheable(small, name, params):
    ds, aux = small
    spec = TrainingSpec(epochs=6, batch_size=32)
    states = []
    for _ in range(2):
        d = make_defense(name, params)
        net = d.train(aux.build(1), ds.x[:100], ds.y[:100], spec, 7, "cpu", aux)
        assert isinstance(net, nn.Module) and not net.training
        states.append({k: v.clone() for k, v in net.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    # the pipeline rebuilds the architecture (plus prepare_module) and loads the cached state
    fresh = aux.build(1)
    if hasattr(d, "prepare_module"):
        fresh = d.prepare_module(fresh)
    fresh.load_state_dict(states[0])
    # without the defender's extra data (the attacker's transfer shadow) it still trains
    make_defense(name, params).train(aux.build(2), ds.x[:100], ds.y[:100], spec, 7, "cpu", None)


def test_dp_sgd_fixes_batchnorm_and_reports_epsilon(small):
    ds, aux = small
    d = make_defense("dp_sgd", {"noise_multiplier": 1.0, "epochs": 2})
    net = d.train(build_model("test_bn_mlp", {}, (20,), 4, seed=0), ds.x[:100], ds.y[:100],
                  TrainingSpec(epochs=5, batch_size=25), 3, "cpu", aux)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in net.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert d.info()["epsilon"] > 0 and d.info()["delta"] == pytest.approx(0.01)
    d.prepare_module(build_model("test_bn_mlp", {}, (20,), 4, seed=5)).load_state_dict(net.state_dict())


def test_dropout_adds_layers_without_changing_state_keys(small):
    _, aux = small
    plain = aux.build(0)
    dropped = make_defense("dropout", {"p": 0.3}).prepare_module(aux.build(0))
    assert sum(isinstance(m, nn.Dropout) for m in dropped.modules()) == 1
    assert plain.state_dict().keys() == dropped.state_dict().keys()


def test_output_transforms():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=50)
    label = p.argmax(axis=1)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    top = make_defense("top_k", {"k": 2}).transform(p)
    assert ((top > 0).sum(axis=1) == 2).all() and np.allclose(top.sum(axis=1), 1)
    broken = make_defense("top_k", {"k": 3, "break_posterior": True}).transform(p)
    assert np.allclose(np.sort(broken, axis=1)[:, ::-1][:, :3], np.array([1, 1 / 2, 1 / 3]) / (11 / 6))
    rounded = make_defense("rounding", {"decimals": 1}).transform(p)
    assert (rounded.argmax(axis=1) == label).all() and np.allclose(rounded, np.round(p, 1), atol=1e-8)
    onehot = make_defense("labels_only", {}).transform(p)
    assert (onehot.argmax(axis=1) == label).all() and (onehot.sum(axis=1) == 1).all()
    noise = make_defense("output_noise", {"scale": 0.3, "keep_label": True}).transform_with(11)
    a, b = noise(p, x), noise(p[::-1], x[::-1])[::-1]
    assert np.allclose(a, b)  # same query, same answer, whatever the batch
    assert (a.argmax(axis=1) == label).all() and np.allclose(a.sum(axis=1), 1) and not np.allclose(a, p)


def test_memguard_never_changes_a_predicted_label(small):
    ds, aux = small
    net = aux.build(3)
    from cyphercat.training.trainer import train_model

    train_model(net, ds.x[:100], ds.y[:100], TrainingSpec(epochs=60, batch_size=32), 1)
    plain = Model(net)
    guarded = make_defense("memguard", {}).wrap(plain, aux, seed=5)
    queries = np.concatenate([ds.x, np.random.default_rng(1).normal(scale=3, size=(200, 20)).astype(np.float32)])
    raw, out = np.exp(plain.log_probs(queries)), np.exp(guarded.log_probs(queries))
    assert (guarded.predict(queries) == plain.predict(queries)).all()
    assert np.abs(out - raw).sum(axis=1).max() > 0.01  # it does perturb
    assert np.allclose(out.sum(axis=1), 1, atol=1e-4)


# ---- bad input: one clear error naming the defense ------------------------------------------------
def test_dp_sgd_on_a_layer_opacus_cannot_fix_fails_before_training(tmp_path):
    spec = _spec(["dp_sgd"], target={"model": {"name": "test_buffered_scale"}, "training": {"epochs": 1}})
    cache = ModelCache(tmp_path, enabled=True)
    with pytest.raises(CyphercatError, match="defenses.dp_sgd") as err:
        run_audit(spec, cache=cache, write_reports=False)
    assert "Opacus" in str(err.value)
    assert cache.misses == 0  # nothing was trained


@pytest.mark.parametrize("params", [{"epsilon": 0}, {"epsilon": -1.0}])
def test_non_positive_epsilon_is_rejected(params):
    with pytest.raises(CyphercatError, match="dp_sgd.epsilon"):
        make_defense("dp_sgd", params)


def test_memguard_on_a_labels_only_model(small):
    ds, aux = small
    labels = Model(predict_proba=lambda x: np.eye(4)[(x[:, 0] > 0).astype(int)])
    with pytest.raises(CyphercatError, match="memguard"):
        make_defense("memguard", {}).wrap(labels, aux, seed=0)


def test_early_stopping_without_a_validation_split_says_so(tmp_path):
    with pytest.raises(CyphercatError, match="splits.validation"):
        run_audit(_spec(["early_stopping"]), cache=ModelCache(tmp_path), write_reports=False)


def test_bad_defense_params_name_the_defense():
    with pytest.raises(CyphercatError, match="label_smoothing"):
        make_defense("label_smoothing", {"smoothing": 1.5})
    with pytest.raises(CyphercatError, match="top_k"):
        make_defense("top_k", {"kk": 1})


def test_defender_records_are_disjoint_from_the_population_attacks_use():
    """Distillation's student trains on the defender split; RMIA's z, test accuracy and an adaptive
    attacker's own defended models use the population. A defended model's cache key follows them."""
    from cyphercat.backends import TrainJob, job_key
    from cyphercat.config import DefenseSpec
    from cyphercat.context import AuditContext
    from cyphercat.pipeline import prepare_run

    spec = _spec(["distillation", "memguard"], reference_models=2, attacks=["rmia_offline"])
    shared, _ = prepare_run(spec, cache=ModelCache(None, enabled=False))
    plan, ds = shared.plan, shared.dataset
    assert len(plan.defender) > 0 and len(plan.population) > 0
    assert not set(plan.defender.tolist()) & set(plan.population.tolist())
    assert np.array_equal(shared.aux.reference_x, ds.x[plan.defender])          # the target's defender
    assert np.array_equal(shared.attacker_aux.reference_x, ds.x[plan.population])  # the attacker's own
    env = shared.env
    target = TrainJob("target", plan.members, spec.target.model, spec.target.training, 1, 2,
                      DefenseSpec(name="distillation"))
    shadow = TrainJob("shadow", plan.shadow_in, spec.target.model, spec.target.training, 1, 2,
                      DefenseSpec(name="distillation"))
    assert env.aux_for(target) is shared.aux and env.aux_for(shadow) is shared.attacker_aux
    # the same job with other defender records is another model: another cache entry
    other, _ = prepare_run(_spec(["distillation"], splits={**spec.splits.model_dump(), "defender": 50},
                                 reference_models=2, attacks=["rmia_offline"]), cache=ModelCache(None, enabled=False))
    assert np.array_equal(other.plan.members, plan.members)
    assert job_key(target, other.env) != job_key(target, env)
    undefended = TrainJob("target", plan.members, spec.target.model, spec.target.training, 1, 2)
    assert job_key(undefended, other.env) == job_key(undefended, env)
    # RMIA draws its z from the query records after the candidates: the population, no defender record
    ctx = AuditContext(shared, DefenseSpec(name="distillation"), "distillation")
    z_pool = ctx.query_idx[len(plan.candidates):]
    assert np.array_equal(z_pool, plan.population) and not set(z_pool.tolist()) & set(plan.defender.tolist())


def test_a_defense_without_defender_records_says_which_split(tmp_path):
    spec = _spec(["distillation"], splits={"target_members": 150, "target_nonmembers": 150, "shadow_members": 150,
                                           "shadow_nonmembers": 150, "defender": 0})
    with pytest.raises(CyphercatError, match="splits.defender"):
        run_audit(spec, cache=ModelCache(tmp_path), write_reports=False)
