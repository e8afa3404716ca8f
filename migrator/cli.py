"""Command line entry point (filled in by the core issue)."""
import sys


def main(argv: list[str] | None = None) -> int:
    print("migrator: under construction", file=sys.stderr)
    return 2
