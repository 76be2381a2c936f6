"""The earlier import path ``flow.metrics``, kept for user code and scripts: it *is* :mod:`flow.ops.metrics`
(the module object is shared)."""
import sys

from flow.ops import metrics as _module

sys.modules[__name__] = _module
