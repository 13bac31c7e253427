"""The `petclick` command: one subcommand per module in petclick/commands/.

Each module there defines `register(subparsers)` adding its parser and setting `func` (a callable
taking the parsed namespace and returning an exit code). User errors (PetclickError) print one
line naming the file and the problem, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import petclick
import petclick.commands
from petclick.core.errors import PetclickError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="petclick", description=petclick.__doc__)
    parser.add_argument("--version", action="version", version=f"petclick {petclick.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(petclick.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"petclick.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except PetclickError as exc:
        print(f"petclick {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
