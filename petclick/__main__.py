"""`python -m petclick` runs the command-line interface."""

from petclick.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
