"""Argument checks shared by the editing operations and their callers (the app's session
and engine): a bad argument raises ``ValueError`` with a message meant for the user."""
from __future__ import annotations

import math

import numpy as np


def check_seed(seed) -> int:
    """A non-negative integer seed (bool refused)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_temperature(temperature) -> float:
    """A finite temperature >= 0 (a standard-deviation multiplier)."""
    t = float(temperature)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return t


def check_masks(lat, masks) -> None:
    """One level mask per latent level, each of that level's (h, w)."""
    if len(masks) != len(lat.levels):
        raise ValueError(f"{len(masks)} level masks for {len(lat.levels)} latent levels")
    for m, t in zip(masks, lat.levels):
        if tuple(m.shape) != tuple(t.shape[-2:]):
            raise ValueError(f"level mask {tuple(m.shape)} does not match latent level {tuple(t.shape)}")
