"""Distillation for membership privacy (DMP; Shejwalkar & Houmansadr, AAAI 2021).

An unprotected teacher (same architecture) trains on the private records; it labels the defender's
non-member reference records with soft labels softmax(z / T); the released student, which never sees
a private record, trains on those soft labels only. The teacher's membership signal reaches the
student only through its predictions on other records.

Deviation from the paper: DMP also selects the reference records whose teacher predictions have low
entropy; here every reference record is used (``reference_size`` caps how many, first in index order).
The reference records are the audit's defender split, disjoint from the population that test accuracy
and population-based attacks use.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from cyphercat.defenses.base import Defense, defense
from cyphercat.defenses.regularization import reference_data, require_torch
from cyphercat.training.trainer import predict_logits, resolve_device, train_model


@defense("distillation")
class Distillation(Defense):
    description = "DMP: release a student trained only on a teacher's soft labels of reference data"
    uses_reference = True

    def __init__(self, temperature: float = 1.0, reference_size: int | None = None):
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if reference_size is not None and reference_size < 1:
            raise ValueError("reference_size must be at least 1")
        self.temperature = temperature
        self.reference_size = reference_size

    def train(self, net, x, y, training, seed, device, aux):
        device = resolve_device(device)
        student = require_torch(net, "distillation")
        teacher = copy.deepcopy(student)
        x, y, rx, _ = reference_data(x, y, aux, seed, "distillation")
        if self.reference_size is not None:
            rx = rx[: self.reference_size]
        train_model(teacher, x, y, training, int(seed) ^ 0x7EAC, device)
        with torch.no_grad():
            soft = torch.softmax(torch.from_numpy(predict_logits(teacher, rx, device)) / self.temperature, dim=1)
        soft = soft.to(device)

        def soft_ce(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            # the "labels" handed to the trainer are row indices into the soft-label table
            return -(soft[idx] * nn.functional.log_softmax(logits, dim=1)).sum(dim=1).mean()

        train_model(student, rx, np.arange(len(rx), dtype=np.int64), training, seed, device, loss_fn=soft_ce)
        self.info_ = {"reference_records": int(len(rx))}
        return student.eval()
