"""``python -m flow.train``: the command-line entry point of :mod:`flow.tools.train`.

Imported, ``flow.train`` *is* ``flow.tools.train`` (the module object is shared)."""
import sys

from flow.tools import train as _tool

if __name__ == "__main__":
    sys.exit(_tool.main())
sys.modules[__name__] = _tool
