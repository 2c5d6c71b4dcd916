"""The ``fastbp`` command-line tool (also ``python -m fastbp``).

One subcommand per job; today only ``bench``::

    fastbp bench                                  # every workload, default rows, 3 timed repeats
    fastbp bench --quick                          # smoke run: a few thousand rows, 1 repeat
    fastbp bench --workloads tabular_small,infer_mnist --threads 1 --json out.json
    fastbp bench --peers torch,jax --plot ratios.png

:func:`main` takes the arguments (default ``sys.argv[1:]``) and returns the exit status:
0 on success (and for ``--help``), 1 when a benchmark check failed (fastbp and NumPy
disagree, or an implementation raised), 2 for a usage error (unknown workload, bad count,
``--plot`` without matplotlib).

Examples
--------
>>> from fastbp.cli import build_parser
>>> args = build_parser().parse_args(["bench", "--quick", "--workloads", "tabular_small"])
>>> args.command, args.quick, args.workloads, args.repeats
('bench', True, 'tabular_small', None)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "fastbp"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _checked(parse_name: str):
    """An argparse type that runs ``runner.<parse_name>`` at parse time, so a typo fails
    before minutes of benchmarking; the text itself is passed on unchanged."""

    def check(text: str) -> str:
        from .bench import runner

        try:
            getattr(runner, parse_name)(text)
        except runner.BenchError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


_workload_list = _checked("parse_workloads")
_peer_list = _checked("parse_peers")


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    from .bench.peers import PEERS
    from .bench.workloads import WORKLOADS

    p = subparsers.add_parser(
        "bench",
        help="time fastbp against the NumPy baseline (and optional peers) on the benchmark workloads",
        description=(
            "Time one epoch of training (or one predict pass for infer_*) per workload on fastbp and on a "
            "plain-NumPy MLP from the same initial weights, in the same row order, and print samples/s, "
            "the fastbp/NumPy ratio, fastbp's GFLOP/s and its share of a measured sgemm ceiling. "
            "Each workload also checks that the first-epoch losses agree; a mismatch is an error row "
            "and the exit status is 1."
        ),
        epilog="workloads: " + ", ".join(WORKLOADS),
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a few thousand rows per workload and 1 timed repeat")  # fmt: skip
    p.add_argument("--workloads", type=_workload_list, default=None, metavar="A,B",
                   help="comma-separated workload ids (default: all)")  # fmt: skip
    p.add_argument("--rows", type=_positive_int, default=None, metavar="N",
                   help="rows per workload, overriding each workload's default (and --quick's)")  # fmt: skip
    p.add_argument("--repeats", type=_positive_int, default=None, metavar="N",
                   help="timed epochs per implementation; the median counts (default 3, 1 with --quick)")  # fmt: skip
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="fastbp.set_num_threads(N); NumPy's BLAS and torch are limited to N threads too "
                        "(default: fastbp's current count, NumPy's BLAS untouched)")  # fmt: skip
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write every number (per-run times, versions, thread counts, ceiling) as JSON")  # fmt: skip
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="bar chart of each implementation's samples/s relative to NumPy "
                        "(needs matplotlib: pip install 'fastbp[plot]')")  # fmt: skip
    p.add_argument("--peers", type=_peer_list, default=None, metavar=",".join(PEERS),
                   help="also time these libraries where installed (never a dependency; "
                        "'not installed' in the table otherwise)")  # fmt: skip
    p.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``fastbp`` argument parser, one subparser per command."""
    from . import __version__

    parser = argparse.ArgumentParser(prog=PROG, description="fastbp: MLPs trained by backpropagation, fast, on CPU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_bench(subparsers)
    return parser


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import runner

    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():  # fail now, not after the run
            print(f"{PROG} bench: error: {option}: no such directory for {path!r}", file=sys.stderr)
            return 2
    if args.plot:
        try:
            runner.require_matplotlib()  # before the run, not after minutes of it
        except ImportError as exc:
            print(f"{PROG} bench: error: {exc}", file=sys.stderr)
            return 2
    try:
        report = runner.run_bench(args.workloads, rows=args.rows, repeats=args.repeats, quick=args.quick,
                                  threads=args.threads, peers=args.peers, out=sys.stdout)  # fmt: skip
    except runner.BenchError as exc:
        print(f"{PROG} bench: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        runner.write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        runner.plot_ratios(report, args.plot)
        print(f"wrote {args.plot}")
    return 0 if report["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastbp`` command line; returns the exit status instead of exiting.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed why
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
