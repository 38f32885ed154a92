"""DP-SGD (Abadi et al. 2016) through Opacus: per-sample clipping to ``max_grad_norm``, Gaussian noise
of ``noise_multiplier · max_grad_norm``, Poisson-sampled batches, and an accountant for ε at δ.

``epochs``, ``batch_size`` and ``lr`` override the target's training spec for this defense only (DP
training usually wants fewer, larger batches and a larger step). Give a target ``epsilon`` (Opacus picks the noise multiplier, ``make_private_with_epsilon``) or a
``noise_multiplier`` (``make_private``); with neither, ε = 8. δ defaults to 1/N for N training records.
The ε the accountant reports after training is recorded in the results (``info_``).

Layers Opacus cannot train privately are replaced by ``ModuleValidator.fix`` (BatchNorm → GroupNorm);
:meth:`DPSGD.prepare_module` applies the same fix to a freshly built model so cached weights load.
What cannot be fixed raises a :class:`CyphercatError` before anything is trained.

Determinism: the Poisson sampler and the noise draw from seeded ``torch.Generator`` objects
(``secure_mode=False``), and the loop runs under :func:`cyphercat.seeding.torch_rng`.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import torch
from torch import nn

from cyphercat.config import TrainingSpec
from cyphercat.defenses.base import Defense, DefenseData, defense
from cyphercat.defenses.regularization import require_torch
from cyphercat.errors import CyphercatError
from cyphercat.seeding import torch_rng
from cyphercat.training.trainer import make_optimizer, resolve_device, to_tensor

FIELD = "defenses.dp_sgd"


def _fixed(net: nn.Module) -> nn.Module:
    """``ModuleValidator.fix`` then a full check (ours and GradSampleModule's); raise if anything is left."""
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("opacus").setLevel(logging.ERROR)
        try:
            net = ModuleValidator.fix(net)
        except Exception as err:  # a fixer that gives up raises its own error types
            raise CyphercatError(FIELD, f"Opacus cannot fix a layer of this model: {err}",
                                 "use an architecture without it, or drop dp_sgd") from None
        errors = [*ModuleValidator.validate(net, strict=False), *GradSampleModule.validate(net, strict=False)]
    if errors:
        first = str(errors[0]).split(". ")[0].replace("\n", " ")
        raise CyphercatError(FIELD, f"the model has a layer Opacus cannot train with per-sample gradients ({first})",
                             "use an architecture without it (no batch statistics or other buffers in trainable "
                             "layers), or drop dp_sgd")
    return net


@defense("dp_sgd")
class DPSGD(Defense):
    description = "differentially private SGD via Opacus (clipping + Gaussian noise); ε from the accountant"

    def __init__(self, epsilon: float | None = None, noise_multiplier: float | None = None, delta: float | None = None,
                 max_grad_norm: float = 1.0, epochs: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, accountant: str = "rdp"):
        if epsilon is not None and noise_multiplier is not None:
            raise CyphercatError(FIELD, "both epsilon and noise_multiplier are set",
                                 "give a target epsilon or a noise_multiplier, not both")
        if epsilon is not None and not epsilon > 0:
            raise CyphercatError(f"{FIELD}.epsilon", f"epsilon must be > 0, got {epsilon}",
                                 "give a positive privacy budget, e.g. epsilon: 8")
        if noise_multiplier is not None and noise_multiplier < 0:
            raise CyphercatError(f"{FIELD}.noise_multiplier", f"must be >= 0, got {noise_multiplier}",
                                 "give a non-negative noise multiplier, e.g. 1.0")
        if delta is not None and not 0 < delta < 1:
            raise CyphercatError(f"{FIELD}.delta", f"delta must be in (0, 1), got {delta}",
                                 "leave it unset (1/N) or give e.g. 1e-5")
        if max_grad_norm <= 0:
            raise CyphercatError(f"{FIELD}.max_grad_norm", f"must be > 0, got {max_grad_norm}", "e.g. 1.0")
        if epochs is not None and epochs < 1 or batch_size is not None and batch_size < 1:
            raise CyphercatError(FIELD, "epochs and batch_size must be at least 1", "fix the value or leave it unset")
        if lr is not None and lr <= 0:
            raise CyphercatError(f"{FIELD}.lr", f"must be > 0, got {lr}", "fix the value or leave it unset")
        if accountant not in ("rdp", "prv", "gdp"):
            raise CyphercatError(f"{FIELD}.accountant", f"unknown accountant {accountant!r}", "use rdp, prv or gdp")
        self.epsilon = epsilon
        self.noise_multiplier = noise_multiplier
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.accountant = accountant

    def prepare_module(self, net: nn.Module) -> nn.Module:
        return _fixed(net)

    def check(self, aux: DefenseData) -> None:
        _fixed(require_torch(aux.build(0), "dp_sgd"))

    def train(self, net, x, y, training: TrainingSpec, seed, device, aux):
        from opacus import PrivacyEngine

        device = resolve_device(device)
        net = _fixed(require_torch(net, "dp_sgd")).to(device)
        template = copy.deepcopy(net)
        n = len(y)
        delta = self.delta if self.delta is not None else 1.0 / n
        epochs = self.epochs or training.epochs
        batch = min(self.batch_size or training.batch_size, n)
        data = torch.utils.data.TensorDataset(to_tensor(x, device),
                                              torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device))
        sample_gen = torch.Generator().manual_seed(int(seed))
        noise_gen = torch.Generator(device=device).manual_seed(int(seed) ^ 0xD9)
        loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, generator=sample_gen)
        # DP-SGD is analysed for plain SGD steps on the noisy gradient; adaptive optimisers only
        # post-process it, so the spec's optimiser is kept (the guarantee is unchanged).
        if self.lr is not None:  # noisy clipped gradients usually want a larger step than plain training
            training = training.model_copy(update={"lr": float(self.lr)})
        opt = make_optimizer(net.parameters(), training)
        target_eps = self.epsilon if self.epsilon is not None else (None if self.noise_multiplier is not None else 8.0)
        with warnings.catch_warnings(), torch_rng(int(seed) ^ 0xD95, device):
            warnings.simplefilter("ignore")  # "secure RNG turned off": deliberate, for reproducible runs
            engine = PrivacyEngine(accountant=self.accountant, secure_mode=False)
            common = dict(module=net, optimizer=opt, data_loader=loader, max_grad_norm=self.max_grad_norm,
                          noise_generator=noise_gen)
            try:
                if target_eps is not None:
                    gsm, opt, loader = engine.make_private_with_epsilon(
                        **common, target_epsilon=float(target_eps), target_delta=delta, epochs=epochs)
                else:
                    gsm, opt, loader = engine.make_private(**common, noise_multiplier=float(self.noise_multiplier))
            except (NotImplementedError, ValueError) as err:
                raise CyphercatError(FIELD, f"Opacus cannot make this model private: {err}",
                                     "use an architecture Opacus supports, or drop dp_sgd") from None
            gsm.train()
            for _ in range(epochs):
                for xb, yb in loader:
                    if len(yb) == 0:  # Poisson sampling can draw an empty batch
                        continue
                    opt.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(gsm(xb), yb).backward()
                    opt.step()
            spent = float(engine.get_epsilon(delta))
        state = {k.removeprefix("_module."): v.detach().clone() for k, v in gsm.state_dict().items()}
        gsm.remove_hooks()
        template.load_state_dict(state)
        self.info_ = {"epsilon": round(spent, 4), "delta": delta, "noise_multiplier": round(float(opt.noise_multiplier), 4),
                      "max_grad_norm": self.max_grad_norm, "epochs": epochs, "batch_size": batch,
                      "accountant": self.accountant}
        return template.eval()
