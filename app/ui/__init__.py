"""SRFlow Studio: the Gradio front end.

* :mod:`~app.ui.layout`: ``build_demo`` (the components of every tab and their events)
  and ``launch_kwargs``;
* :mod:`~app.ui.handlers`: :class:`Studio`, the handlers (thin wrappers around
  :class:`app.session.EditSession` and :mod:`app.engine`), per-tab state and the
  hosting rules;
* :mod:`~app.ui.views`: status lines, every view refreshed from the session after
  every action (``VIEW_NAMES``), and image outputs as files.

The app works offline: analytics and hub telemetry are switched off here, before Gradio
is imported; no CDN assets, no run-history page.
"""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from .handlers import Studio, TabState, guarded  # noqa: E402
from .layout import CSS, TEMP_INFO, build_demo, launch_kwargs  # noqa: E402

__all__ = ["Studio", "TabState", "guarded", "CSS", "TEMP_INFO", "build_demo", "launch_kwargs"]
