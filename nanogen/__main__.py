"""``python -m nanogen``: the same as the ``nanogen`` command."""
import sys

from .cli import main

sys.exit(main())
