"""The session file (``.srflow``): one safetensors file with the LR, the HR ground truth,
the current latents and images, the gallery and the edit log; its metadata carries the
format tag, the model identity and a checksum over everything.  Undo history is not
stored."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from flow.editing import DEFAULT_MARGIN
from flow.models.checkpoint import model_identity
from flow.models.protocol import Latents

from .history import GalleryItem

SESSION_FORMAT = "srflow-studio-session/1"


class SessionFileError(ValueError):
    """A session file cannot be used: unreadable, corrupt, or made with another model."""


def save_session(s, path) -> None:
    """Write the session ``s`` (an :class:`app.session.EditSession`) to ``path``
    (atomically)."""
    from safetensors.torch import save_file

    t: dict[str, torch.Tensor] = {"lr": torch.from_numpy(s.lr.copy())}
    if s.hr is not None:
        t["hr"] = torch.from_numpy(s.hr.copy())
    if s.latents is not None:
        for i, z in enumerate(s.latents.levels):
            t[f"latents.{i}"] = z.detach().float().cpu().clone()
        t["raw"] = torch.from_numpy(s._raw.astype(np.float32))
        t["current"] = torch.from_numpy(s.current.copy())
    gal = []
    for k, g in enumerate(s.gallery):
        t[f"gallery.{k}.image"] = torch.from_numpy(g.image.copy())
        if g.raw is not None:
            t[f"gallery.{k}.raw"] = torch.from_numpy(g.raw.astype(np.float32))
        for i, z in enumerate(g.latents.levels):
            t[f"gallery.{k}.latents.{i}"] = z.detach().float().cpu().clone()
        gal.append({"seed": int(g.seed), "temperature": float(g.temperature), "lr_psnr": g.lr_psnr})
    meta = {
        "format": SESSION_FORMAT,
        "model_identity": s.identity,
        "model_name": s.model.cfg.name,
        "scale": str(s.scale),
        "strides": json.dumps(list(s.model.latent_strides)),
        "gallery": json.dumps(gal),
        "log": json.dumps(s.log, default=str),
        "lr_projection": repr(float(s.lr_projection)),
        "splice_margin": str(int(s.splice_margin)),
        "n_levels": str(len(s.latents.levels)) if s.latents is not None else "0",
    }
    meta["checksum"] = _checksum(t, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(t, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _check_sizes(name: str, shapes: dict, meta: dict, scale: int, kw: dict) -> None:
    """The hosting limits, from the file's header only (before any tensor is read): the LR's
    longest side (``max_lr_side``), the images' sizes (all HR-sized), the gallery's length
    and the memory estimate of opening it (``max_action_mb``)."""
    from app import limits

    lr = shapes.get("lr")
    if lr is None or len(lr) != 3 or lr[2] != 3:
        raise SessionFileError(f"{name} is incomplete or inconsistent: no HxWx3 LR image")
    h, w = int(lr[0]), int(lr[1])
    try:
        limits.check_lr_side(f"{name}", h, w, kw.get("max_lr_side"))
        n_gal = len(json.loads(meta.get("gallery", "[]")))
        if n_gal > limits.MAX_SESSION_GALLERY:
            raise ValueError(f"{name} has {n_gal} gallery samples; at most {limits.MAX_SESSION_GALLERY} are allowed")
        limits.check_action(f"opening {name}", h * scale, w * scale, n_gal + 2,
                            kw.get("max_action_mb", limits.MAX_ACTION_MB))
    except (TypeError, json.JSONDecodeError):
        raise SessionFileError(f"{name} is incomplete or inconsistent: unreadable gallery entry") from None
    except ValueError as e:
        raise SessionFileError(str(e)) from None
    for k, shp in shapes.items():
        if k in ("hr", "current", "raw") or (k.startswith("gallery.") and k.endswith((".image", ".raw"))):
            if tuple(shp) != (h * scale, w * scale, 3):
                raise SessionFileError(f"{name} is incomplete or inconsistent: {k} is {tuple(shp)}, expected "
                                       f"{(h * scale, w * scale, 3)} (the LR × {scale})")


def load_session(cls, path, model, **kw):
    """Open a session file with ``model`` (the one it was saved with) as an instance of
    ``cls`` (:class:`app.session.EditSession`, built with the keywords ``kw``: history and
    hosting limits, checked against the header's sizes before any tensor is read).  The
    current image, latents, gallery and log come back bit for bit; undo history does not.
    Raises :class:`SessionFileError` for unreadable/corrupt/too large files or another model."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SessionFileError(f"session file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            if meta.get("format") == SESSION_FORMAT:         # (else refused below)
                _check_sizes(path.name, shapes, meta, int(model.scale), kw)
            t = {k: f.get_tensor(k) for k in f.keys()}
    except SessionFileError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
        raise SessionFileError(f"{path.name} is not a readable session file (truncated or corrupt?): "
                               f"{str(e).splitlines()[0][:160] if str(e) else type(e).__name__}") from None
    if meta.get("format") != SESSION_FORMAT:
        raise SessionFileError(f"{path.name} is not an SRFlow Studio session file "
                               f"(format {meta.get('format')!r}, expected {SESSION_FORMAT!r})")
    if meta.get("checksum") != _checksum(t, {k: v for k, v in meta.items() if k != "checksum"}):
        raise SessionFileError(f"{path.name} is corrupt (checksum mismatch)")
    ident = getattr(model, "identity", None) or model_identity(model)
    if meta.get("model_identity") != ident:
        raise SessionFileError(
            f"{path.name} was saved with another model ({meta.get('model_name', '?')}, identity "
            f"{meta.get('model_identity')}); the loaded model is {model.cfg.name} (identity {ident}). "
            f"Load it with the model it was made with.")
    try:
        def img(k):
            return np.ascontiguousarray(t[k].numpy()) if k in t else None

        s = cls(model, img("lr"), hr=img("hr"), **kw)
        s.lr_projection = float(meta.get("lr_projection", "0.0"))
        s.splice_margin = int(meta.get("splice_margin", str(DEFAULT_MARGIN)))
        n_lv = int(meta.get("n_levels", "0"))
        shapes = model.latent_shapes(*s.padded_size)

        def lat_of(prefix):
            lv = [t[f"{prefix}{i}"] for i in range(len(shapes))]
            for z, shp in zip(lv, shapes):
                if tuple(z.shape[1:]) != tuple(shp) or z.shape[0] != 1:
                    raise SessionFileError(f"{path.name}: latents of shape {tuple(z.shape)} do not fit "
                                           f"this image (expected (1,)+{tuple(shp)})")
            return Latents([z.to(s.device, s.dtype) for z in lv], model.latent_strides, s.hr_size)

        if n_lv:
            s.latents = lat_of("latents.")
            s._raw = img("raw")
            s.current = img("current")
        for k, g in enumerate(json.loads(meta.get("gallery", "[]"))):
            s.gallery.append(GalleryItem(int(g["seed"]), float(g["temperature"]), img(f"gallery.{k}.image"),
                                         lat_of(f"gallery.{k}.latents."), g["lr_psnr"],
                                         img(f"gallery.{k}.raw")))
        s.log = json.loads(meta.get("log", "[]"))
    except SessionFileError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        raise SessionFileError(f"{path.name} is incomplete or inconsistent: {e}") from None
    return s


def _checksum(tensors: dict, meta: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
        h.update(v.numpy().tobytes())
    for k in sorted(meta):
        h.update(k.encode() + b"=" + str(meta[k]).encode())
    return h.hexdigest()
