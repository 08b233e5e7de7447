"""``python -m sweep`` is the ``flushsweep`` command (without installing the package).

Use this rather than ``python -m sweep.cli``: that would load sweep.cli twice (as
``__main__`` and as ``sweep.cli``), and errors raised as ``sweep.cli.UsageError``
would escape the handler of the other copy.
"""

import sys

from sweep.cli import main

sys.exit(main())
