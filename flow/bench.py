"""``python -m flow.bench``: the command-line entry point of :mod:`flow.tools.bench`.

Imported, ``flow.bench`` *is* ``flow.tools.bench`` (the module object is shared)."""
import sys

from flow.tools import bench as _tool

if __name__ == "__main__":
    sys.exit(_tool.main())
sys.modules[__name__] = _tool
