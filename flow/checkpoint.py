"""The earlier import path ``flow.checkpoint``, kept for user code and scripts: it *is* :mod:`flow.models.checkpoint`
(the module object is shared)."""
import sys

from flow.models import checkpoint as _module

sys.modules[__name__] = _module
