"""Subcommands of the `petclick` CLI: each module defines `register(subparsers)`."""
