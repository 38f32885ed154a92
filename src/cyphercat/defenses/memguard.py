"""MemGuard (Jia et al., CCS 2019): add to each answer the noise that makes the defender's own
membership classifier undecided, without changing the predicted label.

Phase 0 (once per evaluation): the defender trains a shadow model of the target's architecture and
recipe on one half of its reference (non-member) records and a defense classifier g on the shadow's
sorted posteriors, shadow members (that half) vs non-members (the other half). Jia et al. train g on
the target's own members; the wrap contract hands a defense no member records, so the shadow stands
in for the target (as an attacker's would).

Phase I (per query): with logits z = log p and label l, find e minimising
    |g_logit(softmax(z + e))| + c_label · ReLU(max_{j≠l}(z + e)_j − (z + e)_l + margin)
                             + c_dist · ‖softmax(z + e) − p‖₁
by Adam steps on e; keep the first iterate where g is within ``tolerance`` of ½ and the label is l,
else the label-keeping iterate closest to ½ (e = 0 is always one, so the label never changes).
Phase II: add the noise with probability min(budget / ‖noise‖₁, 1) (the distortion budget ε).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from cyphercat.config import TrainingSpec
from cyphercat.defenses.base import Defense, DefenseData, defense
from cyphercat.defenses.output import row_generators
from cyphercat.defenses.regularization import holdout
from cyphercat.errors import CyphercatError
from cyphercat.models.zoo import is_sklearn
from cyphercat.seeding import torch_rng
from cyphercat.target import LOG_FLOOR
from cyphercat.training.trainer import predict_logits, train_model

FIELD = "defenses.memguard"


def _shadow_probs(net, fit_x, fit_y, query_x, training: TrainingSpec, num_classes: int, seed: int) -> np.ndarray:
    if is_sklearn(net):
        from cyphercat.models.sklearn import features, predict_proba

        net.fit(features(fit_x), fit_y)
        return predict_proba(net, query_x, num_classes)
    train_model(net, fit_x, fit_y, training, seed, "cpu")
    return torch.softmax(torch.from_numpy(predict_logits(net, query_x)), dim=1).double().numpy()


@defense("memguard")
class MemGuard(Defense):
    description = "noise that makes a defense classifier output ½ while keeping the label (Jia et al. 2019)"
    stage = "inference"
    uses_reference = True

    def __init__(self, budget: float = 1.0, max_iter: int = 100, step: float = 0.1, c_label: float = 10.0,
                 c_dist: float = 0.1, tolerance: float = 0.05, margin: float = 1e-3):
        if budget <= 0:
            raise ValueError("budget (the L1 distortion budget) must be > 0")
        if max_iter < 1 or step <= 0 or c_label < 0 or c_dist < 0 or tolerance <= 0 or margin < 0:
            raise ValueError("max_iter >= 1, step > 0, tolerance > 0; c_label, c_dist, margin >= 0")
        self.budget = budget
        self.max_iter = max_iter
        self.step = step
        self.c_label = c_label
        self.c_dist = c_dist
        self.tolerance = tolerance
        self.margin = margin

    def check(self, aux: DefenseData) -> None:
        if aux.num_classes < 2:
            raise CyphercatError(FIELD, "memguard needs a probability vector over at least 2 classes",
                                 "drop memguard for this model")
        if len(aux.reference_y) < 4:
            raise CyphercatError(FIELD, "memguard trains its defense classifier on the defender's reference "
                                 "records but there are fewer than 4", "leave records for splits.defender")

    # ---- phase 0 ----------------------------------------------------------------------------------
    def fit(self, aux: DefenseData) -> MemGuard:
        self.check(aux)
        digest = hashlib.sha256(np.ascontiguousarray(aux.reference_y).tobytes()).digest()
        seed = int.from_bytes(digest[:4], "little")
        ix, iy, ox, _ = holdout(aux.reference_x, aux.reference_y, 0.5, seed)
        shadow = aux.build(seed)
        probs = _shadow_probs(shadow, ix, iy, np.concatenate([ix, ox]), aux.training or TrainingSpec(),
                              aux.num_classes, seed)
        feats = torch.from_numpy(-np.sort(-probs, axis=1)).float()
        labels = torch.from_numpy(np.r_[np.ones(len(ix)), np.zeros(len(ox))]).float()[:, None]
        with torch_rng(seed):
            g = nn.Sequential(nn.Linear(feats.shape[1], 64), nn.ReLU(), nn.Linear(64, 1))
        opt = torch.optim.Adam(g.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad(set_to_none=True)
            nn.functional.binary_cross_entropy_with_logits(g(feats), labels).backward()
            opt.step()
        self.g_ = g.eval()
        for p in self.g_.parameters():
            p.requires_grad_(False)
        return self

    # ---- phases I and II --------------------------------------------------------------------------
    def noise(self, probs: np.ndarray) -> np.ndarray:
        """Phase I: the label-keeping noise for each row of ``probs`` (returned as a perturbed vector)."""
        p = torch.from_numpy(np.asarray(probs, dtype=np.float64)).float()
        if p.shape[1] != self.g_[0].in_features:
            raise CyphercatError(FIELD, f"the defense classifier was trained for {self.g_[0].in_features} classes "
                                 f"but a model answers with {p.shape[1]}", "use a shadow dataset with the same "
                                 "classes, or attacker_knows_defense: false")
        z = torch.log(p.clamp_min(1e-30)).clamp_min(-60.0)
        label = z.argmax(dim=1)
        others = nn.functional.one_hot(label, z.shape[1]).bool()
        e = torch.zeros_like(z, requires_grad=True)
        opt = torch.optim.Adam([e], lr=self.step)
        best = p.clone()
        best_gap = self.g_(torch.sort(p, dim=1, descending=True).values)[:, 0].abs()
        done = best_gap <= self.tolerance
        for _ in range(self.max_iter):
            if bool(done.all()):
                break
            zz = z + e
            q = torch.softmax(zz, dim=1)
            h = self.g_(torch.sort(q, dim=1, descending=True).values)[:, 0]
            runner_up = zz.masked_fill(others, -torch.inf).max(dim=1).values
            keep = zz.gather(1, label[:, None])[:, 0]
            with torch.no_grad():
                ok = (~done) & (q.argmax(dim=1) == label) & (h.abs() < best_gap)
                best[ok] = q[ok]
                best_gap = torch.where(ok, h.abs(), best_gap)
                done = done | (ok & (h.abs() <= self.tolerance))
            loss = h.abs() + self.c_label * torch.relu(runner_up - keep + self.margin) \
                + self.c_dist * (q - p).abs().sum(dim=1)
            opt.zero_grad(set_to_none=True)
            loss.masked_fill(done, 0.0).sum().backward()
            opt.step()
        return best.double().numpy()

    def transform_with(self, seed: int, previous=None):
        def transform(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
            if previous is not None:
                probs = previous(probs, x)
            probs = probs / probs.sum(axis=1, keepdims=True)
            noisy = self.noise(probs)
            dist = np.abs(noisy - probs).sum(axis=1)
            use = np.minimum(self.budget / np.maximum(dist, 1e-12), 1.0)
            draws = np.array([g.random() for g in row_generators(x, seed)])
            return np.where((draws < use)[:, None], noisy, probs)

        return transform

    def wrap(self, model, aux: DefenseData, seed: int):
        try:
            lp = np.sort(model.log_probs(aux.reference_x[:64]), axis=1)
        except (RuntimeError, ValueError):  # a model of another dataset (the transfer shadow): probe later
            lp = None
        # a labels-only answer is 1 on the label and exactly the log floor elsewhere, on every probe
        if lp is not None and (lp.shape[1] < 2 or (np.all(lp[:, -1] == 0) and np.all(lp[:, -2] <= LOG_FLOOR + 1e-3))):
            raise CyphercatError(FIELD, "the model returns labels only (one-hot outputs), so there is no "
                                 "probability vector for memguard to perturb",
                                 "apply memguard to a model that outputs probabilities, or drop it")
        if getattr(self, "g_", None) is None:
            self.fit(aux)
        return model.with_transform(self.transform_with(seed, model.transform), memguard=True)
