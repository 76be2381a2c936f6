"""A session's state as undo sees it, and the bounded undo/redo history.

A :class:`Snapshot` is everything an undo step restores.  Arrays and latents are never
modified in place (every operation makes new ones), so a snapshot shares them with the
live state and with other snapshots; :meth:`History.nbytes` counts each shared object
once.  :class:`History` keeps at most ``steps`` undo steps and ``max_bytes`` of memory
(oldest dropped first)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from flow.models.protocol import Latents


@dataclass
class GalleryItem:
    seed: int
    temperature: float
    image: np.ndarray
    latents: Latents
    lr_psnr: float
    raw: np.ndarray | None = field(default=None, repr=False)   # float32 HxWx3 decode (unprojected)


@dataclass
class Snapshot:
    """Everything an undo step restores (arrays are never modified in place)."""

    lr: np.ndarray
    hr: np.ndarray | None
    cond: object
    bicubic: np.ndarray
    latents: Latents | None
    raw: np.ndarray | None
    current: np.ndarray | None
    gallery: list
    label: str = ""

    def objects(self) -> tuple:
        return (self.lr, self.hr, self.cond, self.bicubic, self.latents, self.raw, self.current)


def nbytes(obj) -> int:
    """Memory of an array, tensor, :class:`Latents` or Condition (``nbytes()``)."""
    if obj is None:
        return 0
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, Latents):
        return sum(t.numel() * t.element_size() for t in obj.levels)
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if hasattr(obj, "nbytes") and callable(obj.nbytes):
        return obj.nbytes()
    return 0


class History:
    """Undo and redo stacks of :class:`Snapshot`, bounded in steps and memory."""

    def __init__(self, steps: int, max_bytes: int):
        if int(steps) < 0 or int(max_bytes) < 0:
            raise ValueError("history and max_history_bytes must be >= 0")
        self.steps = int(steps)
        self.max_bytes = int(max_bytes)
        self.undo_stack: list[Snapshot] = []
        self.redo_stack: list[Snapshot] = []

    def push(self, before: Snapshot) -> None:
        """A new operation: ``before`` becomes undoable, redo is forgotten."""
        self.undo_stack.append(before)
        self.redo_stack.clear()

    def undo(self, now: Snapshot) -> Snapshot | None:
        """The state to restore (None: nothing to undo); ``now`` becomes redoable."""
        return self._move(self.undo_stack, self.redo_stack, now)

    def redo(self, now: Snapshot) -> Snapshot | None:
        """The state to restore (None: nothing to redo); ``now`` becomes undoable."""
        return self._move(self.redo_stack, self.undo_stack, now)

    @staticmethod
    def _move(src: list, dst: list, now: Snapshot) -> Snapshot | None:
        if not src:
            return None
        st = src.pop()
        now.label = st.label
        dst.append(now)
        return st

    def nbytes(self, live: Snapshot) -> int:
        """Memory held by the stacks (shared objects counted once; ``live``, the
        current state, not counted)."""
        seen = {id(o) for o in live.objects()} | {id(g) for g in live.gallery}
        total = 0
        for st in self.undo_stack + self.redo_stack:
            for o in st.objects():
                if o is not None and id(o) not in seen:
                    seen.add(id(o))
                    total += nbytes(o)
            for g in st.gallery:
                if id(g) not in seen:
                    seen.add(id(g))
                    total += g.image.nbytes + nbytes(g.latents) + nbytes(g.raw)
        return total

    def trim(self, live: Snapshot) -> None:
        """Drop the oldest steps beyond the bounds."""
        while self.undo_stack and (len(self.undo_stack) > self.steps or self.nbytes(live) > self.max_bytes):
            self.undo_stack.pop(0)
        while self.redo_stack and self.nbytes(live) > self.max_bytes:
            self.redo_stack.pop(0)
