"""The earlier import path ``flow.hcflow``, kept for user code and scripts: it *is* :mod:`flow.models.hcflow`
(the module object is shared)."""
import sys

from flow.models import hcflow as _module

sys.modules[__name__] = _module
