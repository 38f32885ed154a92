"""Deterministic query augmentations (LiRA's extra queries, label-only attacks).

Images: the identity, then 1-pixel shifts, then horizontal flips (flips last because they change the
meaning of digits and text-like images). Tabular and audio features: seeded Gaussian noise, scaled
by each feature's spread. Text has no meaning-preserving augmentation here; asking for one is an error.
"""

from __future__ import annotations

import numpy as np

from cyphercat.errors import CyphercatError

_IMAGE_OPS = [(0, 0, False), (0, 1, False), (0, -1, False), (1, 0, False), (-1, 0, False),
              (0, 0, True), (0, 1, True), (0, -1, True), (1, 0, True), (-1, 0, True),
              (1, 1, False), (-1, -1, False), (1, -1, False), (-1, 1, False)]


def _shift(x: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    out = x[..., ::-1] if flip else x
    if dy or dx:
        out = np.roll(out, (dy, dx), axis=(-2, -1))
        # zero the wrapped-around border rather than letting the opposite edge reappear
        if dy > 0:
            out[..., :dy, :] = 0
        elif dy < 0:
            out[..., dy:, :] = 0
        if dx > 0:
            out[..., :, :dx] = 0
        elif dx < 0:
            out[..., :, dx:] = 0
    return np.ascontiguousarray(out)


def augmentations(x: np.ndarray, modality: str, n: int, seed: int = 0, noise_scale: float = 0.1) -> list[np.ndarray]:
    """``n`` augmented copies of ``x``, the first always the identity."""
    if n < 1:
        raise CyphercatError("augmentations", f"{n} augmentations requested", "ask for at least 1 (the identity)")
    if n == 1:
        return [x]
    if modality == "text":
        raise CyphercatError("augmentations", "augmentations are not defined for text data",
                             "set augmentations to 1 for text datasets")
    if modality == "image" and x.ndim >= 3:
        if n > len(_IMAGE_OPS):
            raise CyphercatError("augmentations", f"at most {len(_IMAGE_OPS)} image augmentations are defined",
                                 f"ask for at most {len(_IMAGE_OPS)}")
        return [_shift(x.copy(), dy, dx, flip) for dy, dx, flip in _IMAGE_OPS[:n]]
    rng = np.random.default_rng(seed)
    spread = x.std(axis=0, keepdims=True) + 1e-8
    return [x] + [(x + noise_scale * spread * rng.standard_normal(x.shape)).astype(x.dtype) for _ in range(n - 1)]
