"""``python -m activerm_fast``: the ``activerm-fast`` command."""

import sys

from .cli import main

sys.exit(main())
