"""The earlier import path ``flow.config``, kept for user code and scripts: it *is* :mod:`flow.models.config`
(the module object is shared)."""
import sys

from flow.models import config as _module

sys.modules[__name__] = _module
