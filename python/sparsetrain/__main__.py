"""``python -m sparsetrain`` is the ``sparsetrain`` command."""

import sys

from .cli import main

sys.exit(main())
