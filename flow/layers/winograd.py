"""Winograd F(2x2, 3x3) convolution, used (inference only) to build SRFlow's condition caches.

y = A^T [ (G w G^T) * (B^T d B) ] A per 2x2 output tile d (4x4 input window):
16 products per tile instead of 36.  All transform matrices have entries 0, +-1 and
+-1/2, so float32 results agree with a direct convolution to rounding (checked by
``tests/test_layers.py`` and ``python -m flow.bench``).  For a nearest-upsampled input
(x2 or any even factor) rows 2i and 2i+1 of every window are equal, so the 3rd row (and
column) of ``B^T d B`` is exactly zero: those 7 of the 16 products are skipped for the
input channels where that holds (``split``).
"""
from __future__ import annotations

import torch

_WINO_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_WINO_AT = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))
# Block order of Winograd-domain weights: the 9 blocks that survive a nearest-upsampled
# input first, then the 7 with a 3rd row or column (k = 4a + b).
_WINO_ORDER = ([k for k in range(16) if k // 4 != 2 and k % 4 != 2]
               + [k for k in range(16) if k // 4 == 2 or k % 4 == 2])


def winograd_weight(w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 kernels ``(O, C, 3, 3)`` -> Winograd domain ``(16, O, C)`` (``G w G^T``,
    computed in float64 and rounded once; blocks in ``_WINO_ORDER``), into ``out``."""
    g = torch.tensor(_WINO_G, dtype=torch.float64, device=w.device)
    gg = torch.kron(g, g)[_WINO_ORDER]                               # (16, 9)
    u = gg @ w.detach().reshape(-1, 9).double().T                    # (16, O*C)
    if out is None:
        out = w.new_empty(16, w.shape[0], w.shape[1])
    out.copy_(u.view(16, w.shape[0], w.shape[1]))
    return out


def _wino_in(xp: torch.Tensor, dest: dict, rows=(0, 1, 2, 3)) -> None:
    """Input transform ``B^T d B`` of the 4x4 windows (stride 2) of the padded map ``xp``
    (C, 2t+2, 2u+2): block ``k = 4a + b`` is written to ``dest[k]`` (C, t*u) when present."""
    ev, od = xp[:, 0::2], xp[:, 1::2]                       # rows 0,2,..  / 1,3,..
    make = (lambda: ev[:, :-1] - ev[:, 1:], lambda: od[:, :-1] + ev[:, 1:],
            lambda: ev[:, 1:] - od[:, :-1], lambda: od[:, :-1] - od[:, 1:])
    for a in rows:
        if not any(4 * a + b in dest for b in range(4)):
            continue
        r = make[a]()
        e, o = r[..., 0::2], r[..., 1::2]
        ops = ((torch.sub, e[..., :-1], e[..., 1:]), (torch.add, o[..., :-1], e[..., 1:]),
               (torch.sub, e[..., 1:], o[..., :-1]), (torch.sub, o[..., :-1], o[..., 1:]))
        for b, (op, p, q) in enumerate(ops):
            if 4 * a + b in dest:
                d = dest[4 * a + b]
                op(p, q, out=d.view(d.shape[0], p.shape[1], p.shape[2]))


def conv3x3_winograd(x: torch.Tensor, u: torch.Tensor, split: int | None = None,
                     outs: list | None = None, band_tiles: int = 1024, chunk: int = 512) -> list:
    """'Same' 3x3 convolution without bias of ``x`` (N, C, H, W) with Winograd-domain
    weights ``u`` (16, O, C) (see :func:`winograd_weight`).

    The result goes to ``outs``, tensors (N, O_i, H, W) that split the O output channels
    in order (default: one new tensor); it is returned.  ``split``: input channels
    ``[split:]`` may be nearest-upsampled by an even factor (pairs of equal rows /
    columns, checked here); the transformed blocks that are then exactly zero are
    skipped, so any input gives the exact convolution.  The work runs on bands of about
    ``band_tiles`` 2x2 tiles and ``chunk`` output channels at a time, in buffers that are
    reused (large temporaries are costly: fresh pages fault on first touch).  Outputs in
    channels-last layout get the products computed in that layout.
    """
    N, C, H, W = x.shape
    O = u.shape[1]
    if outs is None:
        outs = [x.new_empty(N, O, H, W)]
    th, tw = (H + 1) // 2, (W + 1) // 2
    dup_r = dup_c = False
    if split is not None and 0 < split < C:
        s = x[:, split:]
        dup_r = H % 2 == 0 and torch.equal(s[:, :, 0::2], s[:, :, 1::2])
        dup_c = W % 2 == 0 and torch.equal(s[..., 0::2], s[..., 1::2])
    if not (dup_r or dup_c):
        split = C
    zero = [(dup_r and k // 4 == 2) or (dup_c and k % 4 == 2) for k in _WINO_ORDER]
    fi = [j for j in range(16) if not zero[j]]
    pi = [j for j in range(16) if zero[j]]
    nf = len(fi)
    uf = u[:nf] if fi == list(range(nf)) else u[fi]
    up = None
    if pi:
        up = u[nf:, :, :split] if pi == list(range(nf, 16)) else u[pi][:, :, :split]
    # NHWC outputs (all of them) get the products in (tiles, channels) order
    cl = all(t.dim() == 4 and t.shape[2] * t.shape[3] > 1 and t.shape[1] > 1 and
             t.is_contiguous(memory_format=torch.channels_last) for t in outs)
    order = [_WINO_ORDER[j] for j in fi + pi]
    at = torch.tensor(_WINO_AT, dtype=x.dtype, device=x.device)
    a4 = torch.einsum("pa,qb->pqab", at, at).reshape(4, 16)[:, order].contiguous()
    tb = max(1, min(th, band_tiles // tw))
    chunk = max(1, min(O, chunk))
    xb = x.new_zeros(C, 2 * tb + 2, 2 * tw + 2)
    vf = x.new_empty(nf, C, tb * tw)
    vp = x.new_empty(len(pi), split, tb * tw) if pi else None
    mbuf = x.new_empty(16 * chunk * tb * tw)
    ybuf = x.new_empty(4 * chunk * tb * tw)
    bounds, o = [], 0
    for t in outs:
        bounds.append((o, o + t.shape[1], t))
        o += t.shape[1]
    for n in range(N):
        for i0 in range(0, th, tb):
            i1 = min(th, i0 + tb)
            nb, T = i1 - i0, (i1 - i0) * tw
            r0, r1 = 2 * i0 - 1, min(H, 2 * i1 + 1)       # input rows of this band
            lo = max(r0, 0)
            xb[:, lo - r0:r1 - r0, 1:W + 1] = x[n, :, lo:r1]
            if r0 < 0:
                xb[:, 0].zero_()
            if r1 - r0 < 2 * nb + 2:
                xb[:, r1 - r0:2 * nb + 2].zero_()
            xv = xb[:, :2 * nb + 2]
            dest = {k: vf[j, :split, :T] for j, k in enumerate(order[:nf])}
            dest.update({k: vp[j, :, :T] for j, k in enumerate(order[nf:])})
            _wino_in(xv[:split], dest)
            if split < C:
                _wino_in(xv[split:], {k: vf[j, split:, :T] for j, k in enumerate(order[:nf])},
                         rows=(0, 1, 3) if dup_r else (0, 1, 2, 3))
            for o0 in range(0, O, chunk):
                o1 = min(O, o0 + chunk)
                oc = o1 - o0
                if cl:      # products as (tiles, channels): the layout of NHWC outputs
                    m = mbuf[:16 * oc * T].view(16, T, oc)
                    torch.bmm(vf[:, :, :T].transpose(1, 2), uf[:, o0:o1].transpose(1, 2), out=m[:nf])
                    if pi:
                        torch.bmm(vp[:, :, :T].transpose(1, 2), up[:, o0:o1].transpose(1, 2), out=m[nf:])
                else:
                    m = mbuf[:16 * oc * T].view(16, oc, T)
                    torch.bmm(uf[:, o0:o1], vf[:, :, :T], out=m[:nf])
                    if pi:
                        torch.bmm(up[:, o0:o1], vp[:, :, :T], out=m[nf:])
                y = torch.matmul(a4, m.view(16, -1), out=ybuf[:4 * oc * T].view(4, -1))
                for b0, b1, t in bounds:
                    c0, c1 = max(b0, o0), min(b1, o1)
                    if c0 >= c1:
                        continue
                    if cl:
                        src = y.view(2, 2, nb, tw, oc)[..., c0 - o0:c1 - o0].permute(4, 2, 0, 3, 1)
                    else:
                        src = y.view(2, 2, oc, nb, tw)[:, :, c0 - o0:c1 - o0].permute(2, 3, 0, 4, 1)
                    rows = min(H, 2 * i1) - 2 * i0
                    dst = t[n, c0 - b0:c1 - b0, 2 * i0:2 * i0 + rows]
                    if rows == 2 * nb and W == 2 * tw:
                        dst.view(c1 - c0, nb, 2, tw, 2).copy_(src)
                    else:
                        dst.copy_(src.reshape(c1 - c0, 2 * nb, 2 * tw)[:, :rows, :W])
    return outs


