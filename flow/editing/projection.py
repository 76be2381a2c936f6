"""The exact LR-consistency projection: the minimum-norm change of an SR image that makes
its MATLAB-bicubic downscale equal the LR."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..ops.imresize import resize_matrix


@lru_cache(maxsize=32)
def _projector(n_hr: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, A^T (A A^T)^-1) for one dimension's MATLAB-bicubic downscale matrix
    (cached; callers must not modify them)."""
    A = resize_matrix(n_hr, scale=1.0 / scale)
    P = np.linalg.solve(A @ A.T, A).T         # (A A^T) is symmetric
    return np.array(A), P


def project_lr(sr, lr, scale: int, alpha: float = 1.0):
    """Exact minimum-norm projection of ``sr`` onto {Y : D(Y) = lr}, blended by ``alpha``.

    ``D(Y) = A_h Y A_w^T`` per channel is the float MATLAB-bicubic downscale by
    ``scale``; the correction is ``A_h^T (A_h A_h^T)^-1 (lr - D(Y)) (A_w A_w^T)^-1 A_w``
    and the result is ``Y + alpha * correction`` (so ``alpha = 1`` gives
    ``D(result) == lr`` up to float rounding).  Inputs: float torch tensors
    (..., H, W) / (..., h, w), or float numpy arrays HxWxC / hxwxC (returned in the
    same kind and dtype).  No clipping.
    """
    is_np = isinstance(sr, np.ndarray)
    if is_np:
        y = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(sr, dtype=np.float64), -1, 0)))
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(lr, dtype=np.float64), -1, 0)))
        dtype = sr.dtype
    else:
        dtype = sr.dtype
        y, x = sr.double(), lr.to(sr.device).double()
    H, W = y.shape[-2:]
    Ah, Ph = _projector(int(H), int(scale))
    Aw, Pw = _projector(int(W), int(scale))
    if tuple(x.shape[-2:]) != (Ah.shape[0], Aw.shape[0]):
        raise ValueError(f"LR {tuple(x.shape[-2:])} does not match D(SR) {(Ah.shape[0], Aw.shape[0])}")
    dev = y.device
    Ah_t, Ph_t = torch.from_numpy(Ah).to(dev), torch.from_numpy(Ph).to(dev)
    Aw_t, Pw_t = torch.from_numpy(Aw).to(dev), torch.from_numpy(Pw).to(dev)
    r = x - Ah_t @ y @ Aw_t.T
    out = y + float(alpha) * (Ph_t @ r @ Pw_t.T)
    if is_np:
        return np.moveaxis(out.numpy(), 0, -1).astype(dtype)
    return out.to(dtype)


