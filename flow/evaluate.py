"""``python -m flow.evaluate``: the command-line entry point of :mod:`flow.tools.evaluate`.

Imported, ``flow.evaluate`` *is* ``flow.tools.evaluate`` (the module object is shared)."""
import sys

from flow.tools import evaluate as _tool

if __name__ == "__main__":
    sys.exit(_tool.main())
sys.modules[__name__] = _tool
