"""``python -m flow.sr``: the command-line entry point of :mod:`flow.tools.sr`.

Imported, ``flow.sr`` *is* ``flow.tools.sr`` (the module object is shared)."""
import sys

from flow.tools import sr as _tool

if __name__ == "__main__":
    sys.exit(_tool.main())
sys.modules[__name__] = _tool
