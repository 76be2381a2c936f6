"""The earlier import path ``flow.rrdb``, kept for user code and scripts: it *is* :mod:`flow.models.rrdb`
(the module object is shared)."""
import sys

from flow.models import rrdb as _module

sys.modules[__name__] = _module
