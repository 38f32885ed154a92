"""Targets trained elsewhere: weights files and member-index files (bring your own target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cyphercat.errors import CyphercatError


def load_weights(net: nn.Module, path: str | Path) -> nn.Module:
    """Load safetensors, or a torch file through ``torch.load(weights_only=True)`` (no arbitrary pickles)."""
    path = Path(path)
    if not path.exists():
        raise CyphercatError("target.weights", f"file {str(path)!r} does not exist", "give the path of the weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
    except Exception as err:  # noqa: BLE001 - any failure to parse is the same user-facing problem
        raise CyphercatError("target.weights", f"cannot read {path.name}: {str(err).splitlines()[0][:200]}",
                             "save the weights with safetensors or torch.save(model.state_dict())") from None
    if not isinstance(state, dict):
        raise CyphercatError("target.weights", f"{path.name} holds a {type(state).__name__}, not a state dict",
                             "save model.state_dict(), not the model")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CyphercatError("target.weights", f"{path.name} does not fit target.model: {str(err).splitlines()[0][:200]}",
                             "set target.model to the architecture the weights were trained with") from None
    return net.eval()


def load_members(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        if path.suffix == ".npy":
            idx = np.load(path, allow_pickle=False)
        else:
            idx = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as err:
        raise CyphercatError("splits.members_file", f"cannot read {str(path)!r}: {err}",
                             "give a .npy array or a text file with one record index per line") from None
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise CyphercatError("splits.members_file", f"{path.name} must hold a 1-D array of integer indices",
                             "save the member indices as integers")
    return idx.astype(np.int64)
