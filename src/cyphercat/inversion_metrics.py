"""How close a model-inversion reconstruction comes to the training data (pure numpy).

The attack itself never sees these numbers' inputs: membership labels and the records are used only
to *evaluate* a reconstruction, the way the MI-Face paper had people look at the pictures. Distances
to members are always reported next to the same distances to non-members of the same class, so that
"looks like a typical 3" (population knowledge) is told apart from "looks like *this* training 3".
"""

from __future__ import annotations

import numpy as np


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error of ``a`` (one record) against each record of ``b`` (or one record)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if b.shape == a.shape:
        return np.asarray(np.mean((a - b) ** 2))
    return np.mean((b - a[None]) ** 2, axis=tuple(range(1, b.ndim)))


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g)
    return w / w.sum()


def _as_planes(x: np.ndarray) -> np.ndarray:
    """Record -> (planes, H, W): images keep their channels; 1-D records become one 1×F plane."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[None, None, :]
    if x.ndim == 2:
        return x[None]
    return x.reshape(-1, *x.shape[-2:])


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, window: int = 7, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004), Gaussian window, averaged over the valid region and channels.

    The window shrinks to the image for small inputs (8×8 digits get a 7×7 window, so a 2×2 map).
    1 = identical; about 0 = unrelated structure; negative = anti-correlated.
    """
    pa, pb = _as_planes(a), _as_planes(b)
    if pa.shape != pb.shape:
        raise ValueError(f"shapes differ: {pa.shape} vs {pb.shape}")
    wh, ww = min(window, pa.shape[-2]), min(window, pa.shape[-1])
    w = _gaussian_window(max(wh, ww), sigma)[:wh, :ww]
    w = w / w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def local_mean(img: np.ndarray) -> np.ndarray:
        patches = np.lib.stride_tricks.sliding_window_view(img, (wh, ww), axis=(-2, -1))
        return np.einsum("...ij,ij->...", patches, w)

    mu_a, mu_b = local_mean(pa), local_mean(pb)
    var_a = local_mean(pa * pa) - mu_a ** 2
    var_b = local_mean(pb * pb) - mu_b ** 2
    cov = local_mean(pa * pb) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def ssim_many(a: np.ndarray, pool: np.ndarray, data_range: float) -> np.ndarray:
    return np.array([ssim(a, p, data_range) for p in pool], dtype=np.float64)


def _balanced(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger index set to the size of the smaller: a nearest-neighbour distance shrinks
    with the size of the pool, so members and non-members are compared on pools of equal size."""
    n = min(len(a), len(b))
    if len(a) > n:
        a = np.sort(rng.choice(a, n, replace=False))
    if len(b) > n:
        b = np.sort(rng.choice(b, n, replace=False))
    return a, b


def class_distances(recon: np.ndarray, label: int, x: np.ndarray, y: np.ndarray, members: np.ndarray,
                    nonmembers: np.ndarray, data_range: float, rng: np.random.Generator) -> dict:
    """MSE and SSIM of one reconstruction to the nearest record and to the class mean, among the
    members of its class and (separately) among as many non-members of its class.

    Returns plain floats (None where a group has no record of the class) and the dataset index of the
    nearest member, for the picture.
    """
    m = members[y[members] == label]
    n = nonmembers[y[nonmembers] == label]
    m_eq, n_eq = _balanced(m, n, rng)
    out: dict = {"n_members": int(len(m)), "n_nonmembers": int(len(n)), "n_compared": int(len(m_eq))}
    for group, full, eq in (("member", m, m_eq), ("nonmember", n, n_eq)):
        if len(full) == 0:
            out.update({f"mse_nearest_{group}": None, f"ssim_nearest_{group}": None,
                        f"mse_{group}_mean": None, f"ssim_{group}_mean": None})
            continue
        pool = eq if len(eq) else full
        d = mse(recon, x[pool])
        s = ssim_many(recon, x[pool], data_range)
        mean_img = x[full].mean(axis=0)
        out[f"mse_nearest_{group}"] = float(d.min())
        out[f"ssim_nearest_{group}"] = float(s.max())
        out[f"mse_{group}_mean"] = float(mse(recon, mean_img))
        out[f"ssim_{group}_mean"] = float(ssim(recon, mean_img, data_range))
    out["nearest_member"] = int(m[np.argmin(mse(recon, x[m]))]) if len(m) else None
    return out


DISTANCE_KEYS = ("mse_nearest_member", "mse_nearest_nonmember", "mse_member_mean", "mse_nonmember_mean",
                 "ssim_nearest_member", "ssim_nearest_nonmember", "ssim_member_mean", "ssim_nonmember_mean")


def average(rows: list[dict], keys: tuple[str, ...] = DISTANCE_KEYS) -> dict:
    """Mean over classes of each key, skipping classes where it is None; plus the member gaps
    (positive = the reconstruction is closer to members than to non-members)."""
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None

    def gap(a: str, b: str, sign: float) -> float | None:
        return None if out.get(a) is None or out.get(b) is None else float(sign * (out[a] - out[b]))

    out["member_gap_mse_nearest"] = gap("mse_nearest_nonmember", "mse_nearest_member", 1.0)
    out["member_gap_mse_mean"] = gap("mse_nonmember_mean", "mse_member_mean", 1.0)
    out["member_gap_ssim_nearest"] = gap("ssim_nearest_member", "ssim_nearest_nonmember", 1.0)
    out["member_gap_ssim_mean"] = gap("ssim_member_mean", "ssim_nonmember_mean", 1.0)
    return out
