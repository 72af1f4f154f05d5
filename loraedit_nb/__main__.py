"""Command line: ``python -m loraedit_nb {demo,train,edit} ...`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loraedit_nb", description="LoRA-Edit, as notebooks and a CLI")
    sub = p.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="run the main job on the embedded toy backbone; writes outputs/")
    demo.add_argument("--out", default="outputs")
    demo.add_argument("--backbone", default="toy")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-notebooks", action="store_true", help="skip executing the five notebooks")

    def run_demo(a):
        from .demo import run_demo

        run_demo(a.out, a.backbone, a.seed, notebooks=not a.no_notebooks)

    demo.set_defaults(func=run_demo)
    from .cli import add_parsers

    add_parsers(sub)
    a = p.parse_args(argv)
    a.func(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
