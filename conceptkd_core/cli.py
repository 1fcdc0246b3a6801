"""Command line: ``python -m conceptkd_core <command>``. Run with ``-h`` for the commands."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conceptkd_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run a benchmark; prints one JSON line")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    refit = bench_sub.add_parser("refit", help="interactive re-fit vs scikit-learn Lasso at PASCAL VOC scale")
    refit.add_argument("--n-images", type=int, default=11540)
    refit.add_argument("--n-concepts", type=int, default=584)
    refit.add_argument("--n-classes", type=int, default=20)
    refit.add_argument("--alpha", type=float, default=1e-3)
    refit.add_argument("--moves", type=int, default=100)
    refit.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from . import bench

        if args.benchmark == "refit":
            bench.run("refit", n_images=args.n_images, n_concepts=args.n_concepts, n_classes=args.n_classes,
                      alpha=args.alpha, moves=args.moves, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
