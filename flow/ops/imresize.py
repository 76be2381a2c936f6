"""MATLAB-style bicubic ``imresize`` (written from the project spec, srflow.md §5).

Algorithm, per image dimension of length ``n_in`` resized to ``n_out`` with
factor ``scale``:

* kernel: Keys cubic, a = -0.5, support [-2, 2];
* downscaling (scale < 1) is antialiased: ``h(x) = scale * cubic(scale * x)``
  with kernel width ``4 / scale``;
* output pixel ``x`` (1-based) samples input coordinate
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* ``P = ceil(width) + 2`` taps starting at ``floor(u - width / 2)``; weights are
  normalised to sum 1 and tap columns that are zero for every output are dropped;
* out-of-range taps are mirrored symmetrically (MATLAB ``'symmetric'``), index
  table ``[0..n-1, n-1..0]`` taken modulo ``2n``;
* output size ``ceil(scale * n_in)``;
* the image is resized one dimension at a time, in the order ``argsort(scale)``
  (stable, so equal scales do rows = dim 0 first, then columns);
* all maths in float64.  uint8 input is clipped to [0, 255], rounded with
  ``np.around`` (half to even) and re-quantised to uint8 after *each* pass;
  float input stays float (returned in its own float dtype).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "cubic",
    "resize_weights",
    "resize_matrix",
    "output_size",
    "imresize",
    "downscale",
    "imresize_torch",
]

Scale = Union[float, Sequence[float]]

# Guard against ceil(1/3 * 9) == 4 style float artefacts in the output size.
_SIZE_EPS = 1e-9


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (support [-2, 2])."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return inner + outer


def output_size(in_size: int, scale: float) -> int:
    """``ceil(scale * in_size)`` (with a 1e-9 tolerance against float noise)."""
    return max(1, int(math.ceil(scale * in_size - _SIZE_EPS)))


@lru_cache(maxsize=256)
def resize_weights(in_size: int, out_size: int, scale: float,
                   antialias: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Per-dimension taps: ``(weights (out, P'), indices (out, P'))``.

    ``indices`` are 0-based input positions with the symmetric mirror already
    applied; all-zero tap columns are removed.  Arrays are read-only (cached).
    """
    in_size, out_size, scale = int(in_size), int(out_size), float(scale)
    if in_size < 1 or out_size < 1 or scale <= 0:
        raise ValueError(f"bad resize {in_size}->{out_size} scale {scale}")
    if scale < 1.0 and antialias:
        width = 4.0 / scale

        def kernel(d):
            return scale * cubic(scale * d)
    else:
        width = 4.0
        kernel = cubic

    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - ind)
    weights = weights / weights.sum(axis=1, keepdims=True)

    mirror = np.concatenate([np.arange(in_size), np.arange(in_size)[::-1]])
    idx = mirror[np.mod(ind.astype(np.int64) - 1, 2 * in_size)]

    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    idx = np.ascontiguousarray(idx[:, keep])
    weights.setflags(write=False)
    idx.setflags(write=False)
    return weights, idx


@lru_cache(maxsize=256)
def _resize_matrix_cached(in_size: int, out_size: int, scale: float,
                          antialias: bool) -> np.ndarray:
    w, idx = resize_weights(in_size, out_size, scale, antialias)
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_size)[:, None], idx.shape)
    np.add.at(mat, (rows, idx), w)  # mirrored taps fold onto the same column
    mat.setflags(write=False)
    return mat


def resize_matrix(in_size: int, out_size: Optional[int] = None,
                  scale: Optional[float] = None,
                  antialias: bool = True) -> np.ndarray:
    """Dense (out, in) float64 matrix ``A`` of one resize pass, borders folded in.

    For float input ``imresize(Y) == A_h @ Y @ A_w.T`` (up to float rounding).
    Give ``scale`` (then ``out_size`` defaults to ``ceil(scale*in)``) or
    ``out_size`` (then ``scale = out/in``).  The returned array is read-only.
    """
    if scale is None and out_size is None:
        raise ValueError("give out_size or scale")
    if scale is None:
        scale = out_size / in_size
    if out_size is None:
        out_size = output_size(in_size, scale)
    return _resize_matrix_cached(int(in_size), int(out_size), float(scale),
                                 bool(antialias))


def _plan(shape: Tuple[int, int], scale: Optional[Scale],
          out_shape: Optional[Sequence[int]]):
    """Resolve per-dim scales, output sizes and the pass order."""
    if scale is None and out_shape is None:
        raise ValueError("give scale or output_shape")
    if scale is not None:
        if np.isscalar(scale):
            scales = [float(scale), float(scale)]
        else:
            scales = [float(s) for s in scale]
            if len(scales) != 2:
                raise ValueError("scale must be a number or a pair")
        if out_shape is None:
            out_shape = [output_size(n, s) for n, s in zip(shape, scales)]
    else:
        out_shape = list(out_shape)
        scales = [o / n for o, n in zip(out_shape, shape)]
    out_shape = [int(o) for o in out_shape]
    if len(out_shape) != 2:
        raise ValueError("output_shape must be (H, W)")
    order = np.argsort(np.asarray(scales), kind="stable")
    return scales, out_shape, [int(d) for d in order]


def _resize_dim(img: np.ndarray, dim: int, weights: np.ndarray,
                idx: np.ndarray) -> np.ndarray:
    """One separable pass along ``dim`` (0 or 1) of a float64 array."""
    moved = np.moveaxis(img, dim, 0)
    extra = (1,) * (moved.ndim - 1)
    out = None
    for p in range(weights.shape[1]):  # sparse gather + weighted sum, tap by tap
        term = moved[idx[:, p]] * weights[:, p].reshape((-1,) + extra)
        out = term if out is None else out + term
    return np.moveaxis(out, 0, dim)


def imresize(image: np.ndarray, scale: Optional[Scale] = None,
             output_shape: Optional[Sequence[int]] = None,
             antialias: bool = True) -> np.ndarray:
    """MATLAB bicubic resize of an HxW or HxWxC (or HxWx...) numpy array.

    ``scale``: number or (sh, sw); or ``output_shape``: (H', W').
    uint8 in -> uint8 out (rounded per pass); float in -> same float dtype
    out (maths in float64); any other dtype -> float64 out.
    """
    img = np.asarray(image)
    if img.ndim < 2:
        raise ValueError("image must be at least 2-D (HxW[xC])")
    is_uint8 = img.dtype == np.uint8
    out_dtype = img.dtype if (is_uint8 or np.issubdtype(img.dtype, np.floating)) \
        else np.float64
    scales, out_shape, order = _plan(img.shape[:2], scale, output_shape)

    cur = img.astype(np.float64)
    for dim in order:
        n_in, n_out, s = cur.shape[dim], out_shape[dim], scales[dim]
        if n_in == n_out and s == 1.0:
            continue  # exact identity: cubic(0)=1, cubic(+-1)=cubic(+-2)=0
        w, idx = resize_weights(n_in, n_out, s, antialias)
        cur = _resize_dim(cur, dim, w, idx)
        if is_uint8:
            cur = np.around(np.clip(cur, 0.0, 255.0)).astype(np.uint8).astype(np.float64)
    return cur.astype(out_dtype)


def downscale(img: np.ndarray, s: float) -> np.ndarray:
    """``imresize(img, 1/s)``: the MATLAB bicubic LR degradation D_s."""
    return imresize(img, 1.0 / s)


#: The LR of an HR image: :func:`downscale` (uint8 in, uint8 out, per-pass rounding).
make_lr = downscale


def imresize_torch(tensor, scale: Optional[Scale] = None,
                   output_shape: Optional[Sequence[int]] = None,
                   antialias: bool = True, double: bool = False):
    """Float path of :func:`imresize` for an NCHW (or ...xHxW) torch tensor.

    Implemented as ``A_h @ X @ A_w.T`` with :func:`resize_matrix`, so it is
    differentiable and runs on the tensor's device.  Computes in the tensor's
    float dtype (float64 when ``double=True``) and returns the input dtype.
    No uint8 rounding.
    """
    import torch

    if tensor.dim() < 2:
        raise ValueError("tensor must be ...xHxW")
    h, w = int(tensor.shape[-2]), int(tensor.shape[-1])
    scales, out_shape, order = _plan((h, w), scale, output_shape)
    in_dtype = tensor.dtype
    if not torch.is_floating_point(tensor):
        tensor = tensor.to(torch.float32)
    cdtype = torch.float64 if double else tensor.dtype
    x = tensor.to(cdtype)
    for dim in order:
        n_in = x.shape[-2] if dim == 0 else x.shape[-1]
        if n_in == out_shape[dim] and scales[dim] == 1.0:
            continue
        mat = torch.from_numpy(np.array(
            resize_matrix(n_in, out_shape[dim], scales[dim], antialias))
        ).to(device=x.device, dtype=cdtype)
        x = torch.matmul(mat, x) if dim == 0 else torch.matmul(x, mat.t())
    return x.to(in_dtype if in_dtype.is_floating_point else torch.float32)
