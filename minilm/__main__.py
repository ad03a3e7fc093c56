"""The course's command line: `python -m minilm COMMAND --help`.

Each command lives beside the code it runs: a module listed in COMMAND_MODULES defines
`add_command(subparsers)`, which adds its sub-parser and sets `run` as the function to call.
Errors a learner can fix (no such device, unknown preset, bad checkpoint) print one line, and so
does Ctrl+C. Every command runs on $MINILM_THREADS CPU threads when it is set.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from minilm.runtime import set_threads

COMMAND_MODULES = ["minilm.report", "minilm.cli", "minilm.apps.serve", "minilm.deploy.export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minilm",
                                     description="minilm: build, train and use a small language model.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_threads()  # $MINILM_THREADS, for every command
        return args.run(args) or 0
    except (ValueError, RuntimeError, FileNotFoundError) as error:  # DeviceError, PresetError, ...
        print(f"minilm {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minilm {args.command}: stopped (Ctrl+C).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
