"""``python -m flow.ncnn``: the command-line entry point of :mod:`flow.tools.ncnn`.

Imported, ``flow.ncnn`` *is* ``flow.tools.ncnn`` (the module object is shared)."""
import sys

from flow.tools import ncnn as _tool

if __name__ == "__main__":
    sys.exit(_tool.main())
sys.modules[__name__] = _tool
