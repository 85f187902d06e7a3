"""``python -m demo`` (with ``e2e/`` on ``sys.path``): see :mod:`demo.cli`."""

import sys

from demo import cli

sys.exit(cli.main())
