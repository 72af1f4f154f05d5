"""Command line: ``python -m loraedit_nb {demo,train,edit} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# OSError: also weights that cannot be fetched (offline, gated), which the loaders explain in one line
USER_ERRORS = (ValueError, OSError, ImportError)


def main(argv: list[str] | None = None, *, catch: bool = False) -> int:
    """Parse and run a subcommand. ``catch``: print a user error as one line naming the fix and return 2 instead of
    raising (the shell entry points; set ``LORAEDIT_TRACEBACK=1`` to see the traceback)."""
    p = argparse.ArgumentParser(prog="python -m loraedit_nb", description="LoRA-Edit, as notebooks and a CLI")
    sub = p.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="run the main job on the embedded toy backbone; writes outputs/")
    demo.add_argument("--out", default="outputs")
    demo.add_argument("--backbone", default="toy")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-notebooks", action="store_true", help="skip executing the five notebooks")
    demo.add_argument("--only-notebooks", action="store_true", help="run only the notebooks (skip stages 1, 2, 4)")
    demo.add_argument("--notebook", action="append", type=Path, metavar="PATH",
                      help="run this notebook instead of the five (repeatable)")
    demo.add_argument("--cell-timeout", type=int, default=None,
                      help="seconds a notebook cell may run before it counts as failed (default 600; 0 = no limit)")

    def run_demo(a):
        from .demo import NOTEBOOK_CELL_TIMEOUT, run_demo

        timeout = NOTEBOOK_CELL_TIMEOUT if a.cell_timeout is None else (a.cell_timeout or None)
        failed = run_demo(a.out, a.backbone, a.seed, notebooks=not a.no_notebooks, stages=not a.only_notebooks,
                          notebook_paths=a.notebook, cell_timeout=timeout)
        if failed:  # the report is written; say what failed and exit non-zero
            print(f"demo FAILED: {', '.join(failed)} (see {Path(a.out) / 'report.md'})", file=sys.stderr)
            sys.exit(1)

    demo.set_defaults(func=run_demo)
    from . import bench, planner, publish, simulation
    from .cli import add_parsers

    add_parsers(sub)
    bench.add_parser(sub)
    planner.add_parser(sub)
    publish.add_parser(sub)
    simulation.add_parser(sub)
    a = p.parse_args(argv)
    if not catch or os.environ.get("LORAEDIT_TRACEBACK"):
        a.func(a)
        return 0
    try:
        a.func(a)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def console_main() -> int:
    return main(catch=True)


if __name__ == "__main__":
    sys.exit(console_main())
