"""``pilothouse config check FILE``: validate a runtime config and print it normalised.

Lets an agent team (or CI) check the config the operator rendered, or one written by hand,
without starting a runtime.
"""

from __future__ import annotations

import argparse
import json

from pilothouse.runtime import config

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="runtime config file (YAML or JSON)")
    parser.add_argument("--full", action="store_true", help="print every field, including defaults")


def run(args: argparse.Namespace) -> int:
    cfg = config.load_config(args.file)
    document = cfg.model_dump(mode="json", by_alias=True) if args.full else cfg.to_document()
    print(json.dumps(document, indent=2, sort_keys=True))
    return 0
