"""The editing session (no Gradio): :class:`EditSession` and its operations
(:mod:`~app.session.operations`), state snapshots and the bounded undo/redo history
(:mod:`~app.session.history`), the session file format (:mod:`~app.session.files`) and
the image metrics it reports (:mod:`~app.session.metrics`).  Limits: :mod:`app.limits`."""
from .files import SESSION_FORMAT, SessionFileError, load_session, save_session
from .history import GalleryItem, History, Snapshot
from .metrics import fast_psnr, fast_ssim, ssim_map
from .operations import GLOBAL_EDIT_NOTE, EditSession, OpResult, global_edit_note

__all__ = ["EditSession", "OpResult", "GalleryItem", "SessionFileError", "SESSION_FORMAT", "GLOBAL_EDIT_NOTE",
           "global_edit_note", "History", "Snapshot", "load_session", "save_session", "fast_psnr", "fast_ssim",
           "ssim_map"]
