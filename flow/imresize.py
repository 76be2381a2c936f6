"""The earlier import path ``flow.imresize``, kept for user code and scripts: it *is* :mod:`flow.ops.imresize`
(the module object is shared)."""
import sys

from flow.ops import imresize as _module

sys.modules[__name__] = _module
