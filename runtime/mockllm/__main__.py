"""``python -m pilothouse.runtime.mockllm``: the mock LLM server without the ``pilothouse`` CLI."""

from __future__ import annotations

import sys

from pilothouse.runtime.mockllm import command

if __name__ == "__main__":
    sys.exit(command.main())
