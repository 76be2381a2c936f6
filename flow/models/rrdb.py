"""The RRDB conditional encoder (ESRGAN generator) and SRFlow's conditioning features."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.rrdb import RRDB, lrelu
from .config import RRDB_TAILS as TAILS


class RRDBNet(nn.Module):
    """``conv_first -> nb x RRDB -> trunk_conv`` plus nearest-upsampling convs.

    ``tail`` selects how the trunk output and the upsampled maps are formed (the weights
    and keys are identical):

    * ``"official"`` (the official SRFlow code, every official checkpoint):
      ``last = h + trunk_conv(h)`` with ``h`` the output of the last trunk block, and
      ``fea_up{2,4,8} = lrelu(upconv(nearest_up2(previous)))``, i.e. the conditioning maps
      are taken *after* the LeakyReLU (the official in-place ``lrelu`` overwrites them).
    * ``"esrgan"`` (ESRGAN / Real-ESRGAN weights; our models written before the field
      existed): ``last = conv_first(x) + trunk_conv(h)`` and the conditioning maps are the
      convolution outputs *before* the LeakyReLU (the next conv still sees ``lrelu``).

    ``forward`` (the RRDB's own SR image, used for L1 pre-training) is
    ``conv_last(lrelu(HRconv(lrelu(up-feature))))`` in both cases.

    :meth:`features` returns only the conditioning maps a flow needs;
    :meth:`forward` is the plain SR network used for L1 pre-training.
    """

    def __init__(self, nf=64, nb=23, gc=32, scale=4, in_nc=3, out_nc=3, tail="official"):
        super().__init__()
        if tail not in TAILS:
            raise ValueError(f"RRDB tail must be one of {TAILS}, got {tail!r}")
        self.scale = scale
        self.tail = tail
        self.conv_first = nn.Conv2d(in_nc, nf, 3, padding=1)
        self.RRDB_trunk = nn.ModuleList(RRDB(nf, gc) for _ in range(nb))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv2 = nn.Conv2d(nf, nf, 3, padding=1)
        if scale >= 8:
            self.upconv3 = nn.Conv2d(nf, nf, 3, padding=1)
        if scale >= 16:
            self.upconv4 = nn.Conv2d(nf, nf, 3, padding=1)
        self.HRconv = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, padding=1)

    def _ups(self):
        return [m for m in (self.upconv1, self.upconv2, getattr(self, "upconv3", None),
                            getattr(self, "upconv4", None)) if m is not None]

    def trunk(self, lr, keep_blocks=()):
        fea = self.conv_first(lr)
        blocks = {}
        h = fea
        for i, blk in enumerate(self.RRDB_trunk):
            h = blk(h)
            if i in keep_blocks:
                blocks[i] = h
        base = h if self.tail == "official" else fea
        return base + self.trunk_conv(h), blocks

    def features(self, lr, names, blocks):
        """Conditioning maps ``{name: tensor}`` for ``names`` (``fea_up{r}``, r = HR/LR
        ratio of that map: 0 means LR/2), each concatenated with the RRDB outputs of
        ``blocks`` resized by nearest neighbour (64*(len(blocks)+1) channels).

        Without autograd on the CPU the convolutions run in channels-last layout (faster
        with oneDNN); the returned maps are contiguous NCHW either way."""
        fast = not torch.is_grad_enabled() and lr.device.type == "cpu"
        if fast:
            lr = lr.contiguous(memory_format=torch.channels_last)
        last, kept = self.trunk(lr, set(blocks))
        stack = torch.cat([kept[b] for b in blocks], 1) if blocks else None
        want = {int(n) if float(n) >= 1 else 0 for n in names}
        out = {}
        if 0 in want:
            out[0] = F.interpolate(last, scale_factor=0.5, mode="bilinear", align_corners=False,
                                   recompute_scale_factor=True)
        if 1 in want:
            out[1] = last
        need = max((r for r in want if r >= 2), default=1)
        for r, h in self._up_maps(last, need):
            if r in want:
                out[r] = h
        res = {}
        for r, f in out.items():
            if fast:
                res[r] = self._concat_nchw(f, stack)
            elif stack is not None:
                s = stack
                if s.shape[-2:] != f.shape[-2:]:
                    s = F.interpolate(stack, size=f.shape[-2:], mode="nearest")
                f = torch.cat([f, s], 1)
                res[r] = f
            else:
                res[r] = f
        return res

    @staticmethod
    def _concat_nchw(f, stack):
        """``cat([f, nearest_resize(stack)])`` written straight into one NCHW tensor
        (an integer upscale is a plain repeat, as ``F.interpolate(mode='nearest')``)."""
        if stack is None:
            return f.contiguous()
        n, c, h, w = f.shape
        cs, sh, sw = stack.shape[1:]
        out = f.new_empty(n, c + cs, h, w)
        out[:, :c] = f
        if h % sh == 0 and w % sw == 0:
            ry, rx = h // sh, w // sw
            out[:, c:].view(n, cs, sh, ry, sw, rx).copy_(stack[:, :, :, None, :, None].expand(n, cs, sh, ry, sw, rx))
        else:
            out[:, c:] = F.interpolate(stack, size=(h, w), mode="nearest")
        return out

    def _up_maps(self, last, need):
        """Yield ``(r, fea_up{r})`` for r = 2, 4, ... up to ``need`` (tail semantics above)."""
        h, r = last, 1
        post = self.tail == "official"
        for conv in self._ups():
            if r >= need:
                break
            h = conv(F.interpolate(h if (r == 1 or post) else lrelu(h), scale_factor=2, mode="nearest"))
            if post:
                h = lrelu(h)
            r *= 2
            yield r, h

    def forward(self, lr):
        h, _ = self.trunk(lr)
        for _, h in self._up_maps(h, self.scale):
            pass
        if self.tail == "esrgan":      # the official maps are already activated
            h = lrelu(h)
        return self.conv_last(lrelu(self.HRconv(h)))
