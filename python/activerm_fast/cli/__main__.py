"""``python -m activerm_fast.cli``: the ``activerm-fast`` command."""

import sys

from . import main

sys.exit(main())
