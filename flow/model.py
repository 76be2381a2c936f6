"""The earlier import path ``flow.model``, kept for user code and scripts: it *is* :mod:`flow.models.srflow`
(the module object is shared)."""
import sys

from flow.models import srflow as _module

sys.modules[__name__] = _module
