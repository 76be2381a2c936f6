"""Training data: image folders, random crops with MATLAB-bicubic LR, the offline photo
set (Debian wallpaper packages) and the held-out scikit-image evaluation photos.

``python -m flow.data gather OUT_DIR`` collects the wallpaper photos into a training
folder (PNG, longest side at most ``--max-side``) and writes ``ATTRIBUTION.md``.
"""
from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..ops import images
from ..ops.images import IMAGE_EXTS, DataError, read_rgb, to_tensor
from ..ops.imresize import imresize, make_lr

__all__ = ["IMAGE_EXTS", "DataError", "read_rgb", "to_tensor", "make_lr", "HELDOUT", "HELDOUT_LICENCES",
           "PHOTO_SOURCES", "list_images", "heldout_images", "CropSampler", "gather", "main"]

#: The held-out evaluation photos (scikit-image); never used for training.
HELDOUT = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
HELDOUT_LICENCES = {
    "astronaut": "public domain (NASA)", "coffee": "CC0 (Rachel Michetti)",
    "chelsea": "CC0 (Stefan van der Walt)", "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA)", "retina": "CC0 (Häggström)",
}

#: Offline photo sources: (Debian package, glob, licence).
PHOTO_SOURCES = (
    ("lomiri-wallpapers-16.04", "/usr/share/backgrounds/*_by_*.jpg", "CC-BY-4.0 / CC-BY-SA-4.0 (per file, see package copyright)"),
    ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/*.jpg", "GPL-2+ (a few CC-BY-SA; see package copyright)"),
    ("plasma-workspace-wallpapers", "/usr/share/wallpapers/*/contents/images/2560x1600.jpg", "LGPL-3"),
)
SKIP = ("analogpattern", "umang")   # abstract, not photographs


def list_images(dirs) -> list[Path]:
    """All image files under ``dirs`` (recursive); clear errors for missing/empty folders."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    return [f for d in dirs for f in images.list_images(d, "training", recursive=True)]


def heldout_images(names=HELDOUT[:4], crop: int | None = 256, multiple: int = 8) -> dict[str, np.ndarray]:
    """Held-out scikit-image photos as uint8 RGB, centre-cropped to ``crop`` (or the
    whole image) and to a multiple of ``multiple``."""
    import skimage.data as skd

    out = {}
    for n in names:
        im = getattr(skd, n)()
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        im = im[..., :3]
        h, w = im.shape[:2]
        if crop:
            ch, cw = min(crop, h), min(crop, w)
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            im = im[y0:y0 + ch, x0:x0 + cw]
        h, w = im.shape[:2]
        out[n] = np.ascontiguousarray(im[: h // multiple * multiple, : w // multiple * multiple])
    return out


@dataclass
class CropSampler:
    """Random HR crops (with flips) and their MATLAB-bicubic LR, from images held in
    memory.  All randomness comes from the ``torch.Generator`` passed in, so a
    resumed run sees exactly the same batches."""

    images: list[np.ndarray]
    crop: int
    scale: int
    synthetic: float = 0.0     # fraction of crops replaced by :func:`synthetic_crop` patterns

    @classmethod
    def from_dirs(cls, dirs, crop: int, scale: int, zooms=(1.0,), synthetic: float = 0.0) -> "CropSampler":
        """Every image of ``dirs`` at each of ``zooms`` (MATLAB-bicubic downscales made
        once here; each (image, zoom) is drawn equally often).  Zooms below 1 put more
        detail into a crop: at ``0.25`` a 2048-px photo becomes a 512-px one, the scale of
        the scikit-image test photos."""
        if not zooms or any(not 0 < z <= 1 for z in zooms):
            raise DataError(f"zooms must lie in (0, 1], got {list(zooms)}")
        files = list_images(dirs)
        images = []
        for f in files:
            im = read_rgb(f)
            for z in zooms:
                zi = im if z == 1 else imresize(im, float(z))
                if min(zi.shape[:2]) >= crop:
                    images.append(zi)
        if not images:
            raise DataError(f"no training image is at least {crop}x{crop} pixels")
        if not 0 <= synthetic < 1:
            raise DataError(f"synthetic must lie in [0, 1), got {synthetic}")
        return cls(images, crop, scale, float(synthetic))

    def batch(self, n: int, g: torch.Generator, crop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random (HR, LR) crops; ``crop`` overrides the HR crop size (images smaller
        than it are skipped)."""
        hrs, lrs = [], []
        c = int(crop or self.crop)
        if not any(min(im.shape[:2]) >= c for im in self.images):
            raise DataError(f"no training image is at least {c}x{c} pixels")
        for _ in range(n):
            if self.synthetic > 0 and float(torch.rand(1, generator=g)) < self.synthetic:
                p = synthetic_crop(c, g, self.scale)
                hrs.append(to_tensor(p))
                lrs.append(to_tensor(make_lr(p, self.scale)))
                continue
            i = int(torch.randint(len(self.images), (1,), generator=g))
            im = self.images[i]
            while min(im.shape[:2]) < c:      # only with a crop larger than the sampler's own
                i = int(torch.randint(len(self.images), (1,), generator=g))
                im = self.images[i]
            h, w = im.shape[:2]
            y = int(torch.randint(h - c + 1, (1,), generator=g))
            x = int(torch.randint(w - c + 1, (1,), generator=g))
            flips = torch.randint(2, (3,), generator=g).tolist()
            p = im[y:y + c, x:x + c]
            if flips[0]:
                p = p[:, ::-1]
            if flips[1]:
                p = p[::-1]
            if flips[2]:
                p = p.transpose(1, 0, 2)
            p = np.ascontiguousarray(p)
            hrs.append(to_tensor(p))
            lrs.append(to_tensor(make_lr(p, self.scale)))
        return torch.stack(hrs), torch.stack(lrs)


SYNTHETIC_KINDS = ("noise", "flat", "checker", "edge", "bars")


def synthetic_crop(c: int, g: torch.Generator, scale: int = 4, kind: str | None = None) -> np.ndarray:
    """A ``c x c`` HR pattern whose MATLAB-bicubic LR looks like the inputs photos never give:
    ``noise`` (uniform or Gaussian values in blocks of 1-2 LR pixels, so the LR itself is
    noise), ``flat`` colour, ``checker`` (periods down to one LR pixel), a hard ``edge``, and
    saturated colour ``bars``.  Training on a small share of them keeps the flow's
    conditioning inside the range it has learned on such LRs (see the model card)."""
    kinds = SYNTHETIC_KINDS
    k = kind or kinds[int(torch.randint(len(kinds), (1,), generator=g))]
    rnd = lambda *shape: torch.rand(shape, generator=g).numpy()  # noqa: E731
    col = lambda: (rnd(3) > 0.5).astype(np.float32) if rnd(1)[0] < 0.5 else rnd(3)  # noqa: E731
    if k == "noise":
        block = scale * int(torch.randint(1, 3, (1,), generator=g))
        m = -(-c // block)
        if rnd(1)[0] < 0.5:
            v = rnd(m, m, 3)
        else:
            v = np.clip(0.5 + 0.25 * torch.randn((m, m, 3), generator=g).numpy(), 0, 1)
        img = np.repeat(np.repeat(v, block, 0), block, 1)[:c, :c]
    elif k == "flat":
        img = np.broadcast_to(col(), (c, c, 3))
    elif k == "checker":
        square = scale * int(2 ** int(torch.randint(0, 3, (1,), generator=g)))   # 1, 2 or 4 LR pixels
        idx = np.arange(c) // square
        mask = ((idx[:, None] + idx[None]) % 2).astype(bool)
        a, b = (np.ones(3, np.float32), np.zeros(3, np.float32)) if rnd(1)[0] < 0.5 else (col(), col())
        img = np.where(mask[..., None], a, b)
    elif k == "edge":
        ang = rnd(1)[0] * 2 * np.pi
        yy, xx = np.mgrid[:c, :c] - (c - 1) / 2
        mask = (np.cos(ang) * xx + np.sin(ang) * yy) > (rnd(1)[0] - 0.5) * c / 2
        img = np.where(mask[..., None], col(), col())
    elif k == "bars":
        widths = []
        while sum(widths) < c:
            widths.append(int(torch.randint(scale, 4 * scale + 1, (1,), generator=g)))
        cols = np.concatenate([np.broadcast_to(col(), (w, 3)) for w in widths])[:c]
        img = np.broadcast_to(cols[None], (c, c, 3))
        if rnd(1)[0] < 0.5:
            img = img.transpose(1, 0, 2)
    else:
        raise ValueError(f"unknown synthetic kind {k!r}; known: {kinds}")
    return np.ascontiguousarray(np.clip(np.asarray(img, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8))


def gather(out_dir, max_side: int = 2048) -> list[Path]:
    """Copy the offline wallpaper photos into ``out_dir`` (PNG, longest side <=
    ``max_side`` by MATLAB-bicubic downscaling) and write ``ATTRIBUTION.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, lines = [], ["# Training photos", "",
                          "Gathered by `python -m flow.data gather` from Debian packages.", ""]
    missing = []
    for pkg, pattern, lic in PHOTO_SOURCES:
        files = sorted(f for f in glob.glob(pattern) if not any(s in f for s in SKIP))
        if not files:
            missing.append(pkg)
            continue
        lines.append(f"## {pkg} ({lic})")
        for f in files:
            im = read_rgb(f)
            s = max(im.shape[:2])
            if s > max_side:
                im = imresize(im, max_side / s)
            name = (Path(f).parent.parent.parent.name if "wallpapers" in f else Path(f).stem)
            dst = out / f"{pkg.split('-')[0]}_{name}.png"
            Image.fromarray(im).save(dst)
            written.append(dst)
            lines.append(f"- `{dst.name}`: {os.path.basename(f)} from `{pkg}`, {im.shape[1]}x{im.shape[0]}")
        lines.append("")
    if missing:
        lines.append("Missing packages (install with apt-get): " + ", ".join(missing))
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")
    if not written:
        raise DataError("no photos found: apt-get install " + " ".join(p for p, _, _ in PHOTO_SOURCES))
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m flow.data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gather", help="collect the offline wallpaper photos into a training folder")
    g.add_argument("out_dir")
    g.add_argument("--max-side", type=int, default=2048)
    a = ap.parse_args(argv)
    if a.cmd == "gather":
        files = gather(a.out_dir, a.max_side)
        print(f"wrote {len(files)} photos to {a.out_dir}")


if __name__ == "__main__":
    main()
