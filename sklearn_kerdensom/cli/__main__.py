"""``python -m sklearn_kerdensom.cli``: the ``kerdensom`` command."""

import sys

from . import main

sys.exit(main())
