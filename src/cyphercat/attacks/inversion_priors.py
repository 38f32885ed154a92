"""The two image-side ingredients of MI-Face's cost and update: the AuxTerm prior and the paper's
Process step (denoise, then sharpen)."""

from __future__ import annotations

import torch
from torch import nn


def aux_term(x: torch.Tensor, prior: str) -> torch.Tensor:
    """Per-record prior term; scale-free (means, not sums) so one weight fits any input size."""
    if prior == "l2":
        return x.flatten(1).pow(2).mean(1)
    if prior == "tv":
        dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        return dh + dw
    return torch.zeros(len(x), dtype=x.dtype, device=x.device)


_BLUR = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


def denoise(x: torch.Tensor, amount: float = 0.5) -> torch.Tensor:
    """The paper's Process for image targets: blur (denoise) then unsharp-mask (sharpen)."""
    shape = x.shape
    planes = x.reshape(-1, 1, *shape[-2:])
    k = _BLUR.to(x.dtype).to(x.device)[None, None]
    blurred = nn.functional.conv2d(nn.functional.pad(planes, (1, 1, 1, 1), mode="replicate"), k)
    again = nn.functional.conv2d(nn.functional.pad(blurred, (1, 1, 1, 1), mode="replicate"), k)
    return (blurred + amount * (blurred - again)).reshape(shape)
