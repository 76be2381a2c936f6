"""Operations on latents alone (no model): region resampling, taking a region from other
latents, latent normalization (SRFlow eqs. 6-7), restoration and style mixing.

Pure and seeded: none of them mutates its inputs; each returns new tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.protocol import Latents
from .checks import check_masks, check_seed, check_temperature

MODES = ("global", "local", "spatial")


# ----------------------------------------------------------------------------
# region resampling
# ----------------------------------------------------------------------------

def resample_region(lat: Latents, masks, temperature: float, seed: int) -> Latents:
    """Replace the latents inside the level masks by fresh N(0, tau^2) draws.

    Per level (encode order) a full-size N(0, 1) tensor is drawn from
    ``torch.Generator().manual_seed(seed)`` on the CPU and scaled by ``tau``; the
    masked entries (all channels, every batch item) are taken from it.
    """
    check_masks(lat, masks)
    tau, seed = check_temperature(temperature), check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    levels = []
    for t, m in zip(lat.levels, masks):
        fresh = (torch.randn(tuple(t.shape), generator=g) * tau).to(t.device, t.dtype)
        levels.append(torch.where(m.to(t.device)[None, None], fresh, t))
    return Latents(levels, list(lat.strides), tuple(lat.hr_size))


def take_region(lat: Latents, other: Latents, masks) -> Latents:
    """``lat`` with the entries inside the level masks copied from ``other``."""
    check_masks(lat, masks)
    if len(other.levels) != len(lat.levels) or any(
            a.shape[1:] != b.shape[1:] for a, b in zip(lat.levels, other.levels)):
        raise ValueError("the two latents describe different images/models")
    levels = [torch.where(m.to(a.device)[None, None], b.to(a.device, a.dtype), a)
              for a, b, m in zip(lat.levels, other.levels, masks)]
    return Latents(levels, list(lat.strides), tuple(lat.hr_size))


# ----------------------------------------------------------------------------
# latent normalization (eqs. 6-7)
# ----------------------------------------------------------------------------

#: A collection whose (unbiased) std is below this counts as constant.
DEGENERATE_STD = 1e-6


@dataclass
class NormInfo:
    """What :func:`normalize` did.  ``draws``: per group, in draw order, a dict with
    ``group`` (level index, or -1 for global), ``N`` (collection size), and the drawn
    ``mu_hat`` and ``var_hat`` arrays (one entry per collection)."""

    mode: str
    collections: int = 0
    skipped: int = 0          # collections with N < 2 (left unchanged, no draws)
    degenerate: int = 0       # constant collections (set to their drawn mean)
    draws: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def draw_moments(rng: np.random.Generator, M: int, N: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 6 for ``M`` collections of size ``N``: ``mu_hat ~ N(0, tau^2/N)``,
    ``var_hat ~ Gamma(shape=(N-1)/2, scale=2 tau^2/(N-1))`` (numpy, in that order)."""
    mu = rng.normal(0.0, tau / math.sqrt(N), size=M)
    var = rng.gamma((N - 1) / 2.0, 2.0 * tau * tau / (N - 1), size=M)
    return mu, var


def _normalize_rows(rows: torch.Tensor, rng, tau: float, info: NormInfo, group: int) -> torch.Tensor:
    """Eq. 7 on every row (a collection) of a (M, N) tensor; float64 maths."""
    M, N = rows.shape
    if M == 0:
        return rows
    if N < 2:
        info.skipped += M
        info.notes.append(f"group {group}: collections of size {N} < 2 left unchanged")
        return rows
    x = rows.double()
    mu_t = x.mean(dim=1, keepdim=True)
    sd_t = x.std(dim=1, unbiased=True, keepdim=True)
    mu_h, var_h = draw_moments(rng, M, N, tau)
    info.draws.append({"group": group, "N": N, "mu_hat": mu_h, "var_hat": var_h})
    info.collections += M
    mu_h = torch.from_numpy(mu_h).to(x.device)[:, None]
    sd_h = torch.from_numpy(np.sqrt(var_h)).to(x.device)[:, None]
    const = sd_t <= DEGENERATE_STD
    n_const = int(const.sum())
    if n_const:
        info.degenerate += n_const
        info.notes.append(f"group {group}: {n_const} constant collection(s) set to their drawn mean")
    factor = torch.where(const, torch.zeros_like(sd_t), sd_h / torch.where(const, torch.ones_like(sd_t), sd_t))
    return (factor * (x - mu_t) + mu_h).to(rows.dtype)


def normalize(lat: Latents, mode: str = "local", temperature: float = 0.8, seed: int = 0,
              masks=None, return_info: bool = False):
    """Latent normalization, SRFlow eqs. 6-7.

    Every collection Z of N values (N >= 2) with mean m and unbiased std s gets a new
    mean ``mu_hat ~ N(0, tau^2/N)`` and variance ``var_hat ~ Gamma((N-1)/2,
    scale=2 tau^2/(N-1))`` -- the distributions of the sample mean and unbiased
    sample variance of N iid N(0, tau^2) draws -- and becomes
    ``(sqrt(var_hat)/s) (Z - m) + mu_hat``, so afterwards its mean is exactly
    ``mu_hat`` and its unbiased variance exactly ``var_hat``.

    Collections (per batch item):

    * ``'global'``: all entries of all levels together (one collection);
    * ``'local'``: per level and position (i, j), the vector over channels;
    * ``'spatial'``: per level and channel k, the map over positions.

    With ``masks`` (level masks), only masked entries form the collections and only
    they change: local collections exist only at masked positions, spatial and
    global ones contain only masked positions.

    Draws: ``rng = numpy.random.default_rng(seed)``; groups are visited in order
    (local/spatial: levels in encode order; global: one group) and each group draws
    ``mu_hat`` for all its M collections, then ``var_hat`` (:func:`draw_moments`).
    Collections are ordered batch-major, then row-major positions (local) or
    channels (spatial).  Guards: groups whose collections have N < 2 are left
    unchanged and draw nothing; a collection with ``s <= 1e-6`` (constant) is set to
    ``mu_hat`` everywhere.  Both are counted in the :class:`NormInfo` returned with
    ``return_info=True``.
    """
    if mode not in MODES:
        raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
    tau, seed = check_temperature(temperature), check_seed(seed)
    if masks is not None:
        check_masks(lat, masks)
    rng = np.random.default_rng(seed)
    info = NormInfo(mode)
    B = lat.batch
    out = []
    if mode == "global":
        parts, sizes = [], []
        for i, t in enumerate(lat.levels):
            if masks is None:
                p = t.reshape(B, -1)
            else:
                p = t[:, :, masks[i].to(t.device)].reshape(B, -1)
            parts.append(p)
            sizes.append(p.shape[1])
        rows = _normalize_rows(torch.cat(parts, dim=1), rng, tau, info, -1)
        chunks = torch.split(rows, sizes, dim=1)
        for i, (t, c) in enumerate(zip(lat.levels, chunks)):
            if masks is None:
                out.append(c.reshape(t.shape).contiguous())
            else:
                y = t.clone()
                m = masks[i].to(t.device)
                y[:, :, m] = c.reshape(B, t.shape[1], -1)
                out.append(y)
    else:
        for i, t in enumerate(lat.levels):
            Bc, C, h, w = t.shape
            m = masks[i].to(t.device) if masks is not None else torch.ones(h, w, dtype=torch.bool, device=t.device)
            if mode == "local":
                v = t.permute(0, 2, 3, 1)[:, m]                      # (B, P, C)
                P = v.shape[1]
                rows = _normalize_rows(v.reshape(Bc * P, C), rng, tau, info, i)
                y = t.permute(0, 2, 3, 1).clone()
                y[:, m] = rows.reshape(Bc, P, C)
                out.append(y.permute(0, 3, 1, 2).contiguous())
            else:
                v = t[:, :, m]                                        # (B, C, P)
                P = v.shape[2]
                rows = _normalize_rows(v.reshape(Bc * C, P), rng, tau, info, i)
                y = t.clone()
                y[:, :, m] = rows.reshape(Bc, C, P)
                out.append(y)
    res = Latents(out, list(lat.strides), tuple(lat.hr_size))
    return (res, info) if return_info else res


def restore_latents(lat: Latents, temperature: float = 0.8, seed: int = 0, masks=None) -> Latents:
    """Restoration (§4.5): spatial normalization (seed) then local (seed + 1)."""
    z = normalize(lat, "spatial", temperature, seed, masks)
    return normalize(z, "local", temperature, check_seed(seed) + 1, masks)


# ----------------------------------------------------------------------------
# style
# ----------------------------------------------------------------------------

def style_transfer(lat: Latents, style: Latents, masks=None) -> Latents:
    """Style transfer as in §4.2 by substitution: the style latents everywhere, or only
    inside the level masks (elsewhere the current latents).  Carries the style image's
    structure (ghost edges) and can leave the trained range; the session uses
    :func:`match_statistics` instead (this is kept for comparison, ``app.bench_editing``)."""
    if masks is None:
        if len(style.levels) != len(lat.levels) or any(
                a.shape[1:] != b.shape[1:] for a, b in zip(lat.levels, style.levels)):
            raise ValueError("style latents do not match the image")
        return style.clone()
    return take_region(lat, style, masks)


#: The largest factor by which :func:`match_statistics` scales a latent direction.
MAX_STD_RATIO = 2.0
#: The largest per-direction std of the transferred latents (the app's temperature limit).
MAX_STYLE_STD = 1.2
#: The largest |channel mean| of the transferred latents.  Photos encode to channel means
#: within about +-0.3; a constant shift of every position beyond that (a checkerboard
#: style gives 1.4-1.8) is far outside the training range and decodes to NaN/Inf.
MAX_STYLE_MEAN = 0.4


@dataclass
class StyleStats:
    """Per-level latent statistics of a style image: ``mean[i]`` (C_i,), ``cov[i]``
    (C_i, C_i), the channel mean and covariance of level ``i`` over all positions."""

    mean: list
    cov: list

    @staticmethod
    def of(lat: Latents) -> "StyleStats":
        means, covs = [], []
        for t in lat.levels:
            x = t.double().permute(1, 0, 2, 3).reshape(t.shape[1], -1)      # (C, P)
            mu = x.mean(dim=1)
            xc = x - mu[:, None]
            means.append(mu)
            covs.append(xc @ xc.T / max(1, x.shape[1] - 1))
        return StyleStats(means, covs)


def _sym_pow(cov: torch.Tensor, lo: float, hi: float):
    """Eigen-decomposition of a covariance with its eigenvalues clamped to [lo, hi]."""
    ev, V = torch.linalg.eigh(cov)
    return ev.clamp(lo, hi), V


def match_statistics(lat: Latents, style: StyleStats, strength: float = 1.0, masks=None,
                     max_ratio: float = MAX_STD_RATIO, max_std: float = MAX_STYLE_STD,
                     max_mean: float = MAX_STYLE_MEAN) -> Latents:
    """Style transfer by latent statistics: per level, the channel vectors of ``lat``
    (at all positions, or the masked ones) are whitened with their own mean and
    covariance and coloured with the style's (a whitening-colouring transform), then
    blended with the originals by ``strength`` in [0, 1].  The image keeps its own
    latent structure (no pixel of the style image is carried over); only the
    per-level channel statistics -- how strongly and in which sub-pixel patterns the
    flow adds detail -- move to the style's.

    The image's covariance is shrunk toward its mean variance by ``C / (C + P)`` (C
    channels, P positions), so that small masks and coarse levels stay well posed.

    Range guard: the colouring map's gain in any direction is clamped to
    ``[1/max_ratio, max_ratio]`` relative to the image's own std in that direction, the
    style's stds to at most ``max_std`` (the temperature limit) and its channel means to
    ``+-max_mean``, so the result stays within the range the model was trained on
    (``N(0, tau^2)``, tau <= max_std, photo-like means)."""
    if not (0.0 <= float(strength) <= 1.0):
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    if len(style.mean) != len(lat.levels) or any(
            m.shape[0] != t.shape[1] for m, t in zip(style.mean, lat.levels)):
        raise ValueError("the style statistics describe a different model")
    if masks is not None:
        check_masks(lat, masks)
    a = float(strength)
    out = []
    for i, t in enumerate(lat.levels):
        B, C, h, w = t.shape
        m = masks[i].to(t.device) if masks is not None else torch.ones(h, w, dtype=torch.bool, device=t.device)
        v = t.permute(0, 2, 3, 1)[:, m].double()                           # (B, P, C)
        if v.shape[1] < 2 or a == 0.0:
            out.append(t.clone())
            continue
        ys = []
        for b in range(B):
            x = v[b]
            mu = x.mean(dim=0)
            xc = x - mu
            P = x.shape[0]
            cov = xc.T @ xc / (P - 1)
            # shrinkage toward the mean variance: few positions (a small mask, a coarse
            # level) give a rank-deficient covariance whose whitening would blow up noise
            rho = C / (C + P)
            iso = float(cov.diagonal().mean().clamp_min(1e-12))
            cov = (1 - rho) * cov + rho * iso * torch.eye(C, dtype=cov.dtype)
            ev_c, Vc = _sym_pow(cov, 1e-6 * iso, float("inf"))
            ev_s, Vs = _sym_pow(style.cov[i].to(x), 0.0, max_std ** 2)
            # whitening with the image's covariance, colouring with the style's
            W_c = Vc @ torch.diag(ev_c.rsqrt()) @ Vc.T
            C_s = Vs @ torch.diag(ev_s.sqrt()) @ Vs.T
            T = C_s @ W_c
            # the gain of T in every direction, clamped to [1/r, r]
            U, S, Vh = torch.linalg.svd(T)
            T = U @ torch.diag(S.clamp(1.0 / max_ratio, max_ratio)) @ Vh
            mu_s = style.mean[i].to(x)
            mu_s = mu_s.clamp(-max_mean, max_mean)
            y = xc @ T.T + mu_s
            ys.append((1 - a) * x + a * y)
        y = torch.stack(ys).to(t.dtype)
        full = t.permute(0, 2, 3, 1).clone()
        full[:, m] = y
        out.append(full.permute(0, 3, 1, 2).contiguous())
    return Latents(out, list(lat.strides), tuple(lat.hr_size))
