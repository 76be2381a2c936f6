"""``python -m flow.data``: the command-line entry point of :mod:`flow.tools.data`.

Imported, ``flow.data`` *is* ``flow.tools.data`` (the module object is shared)."""
import sys

from flow.tools import data as _tool

if __name__ == "__main__":
    sys.exit(_tool.main())
sys.modules[__name__] = _tool
