"""The ``fastbp`` command-line tool (also ``python -m fastbp``).

One subcommand per job::

    fastbp train data.csv --target species --hidden 64,32 --epochs 20 --out model.fbp
    fastbp predict model.fbp new.csv --out preds.csv [--proba]
    fastbp info model.fbp
    fastbp bench [--quick] [--workloads A,B] [--threads N] [--load] [--json out.json] [--peers torch,jax]

``train`` reads a CSV (a header row; numeric or text feature columns, text one-hot encoded;
the target may be text for classification; see :mod:`fastbp._tabular`) or an ``.npz``
holding arrays ``X`` and ``y``, trains an MLP whose first layer standardises the features
(``--no-standardize``: none) and saves it with its class labels, column names and
encoding (see :mod:`fastbp.io`). ``predict`` streams its input
in chunks and writes one CSV row per input row as it goes. ``info`` describes a model file.

:func:`main` takes the arguments (default ``sys.argv[1:]``) and returns the exit status:
0 on success (and for ``--help``), 1 when a command failed (a missing or malformed file, a
non-numeric feature, training diverged) or a benchmark check failed, 2 for a usage error
(unknown option, bad value, unknown workload, ``--plot`` without matplotlib). Errors are
one line on stderr starting with ``fastbp: error:`` (``fastbp bench: error:`` for bench),
never a traceback; set ``FASTBP_DEBUG=1`` to see the traceback of an unexpected error.

Examples
--------
>>> from fastbp.cli import build_parser
>>> args = build_parser().parse_args(["bench", "--quick", "--workloads", "tabular_small"])
>>> args.command, args.quick, args.workloads, args.repeats
('bench', True, 'tabular_small', None)
>>> args = build_parser().parse_args(["train", "iris.csv", "--target", "species", "--hidden", "16,8"])
>>> args.hidden, args.epochs, args.task, args.validation_split
([16, 8], 20, 'auto', 0.1)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._tabular import (
    CHUNK_ROWS,
    CSV,
    MAX_AUTO_CLASSES,
    Encoding,
    file_kind,
    prepare_targets,
    read_npz,
    read_training_data,
)
from .errors import CLIError as CLIError  # re-exported: fastbp.cli.CLIError

PROG = "fastbp"
#: Rows read, predicted and written at a time by ``fastbp predict``.
PREDICT_CHUNK_ROWS = CHUNK_ROWS


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (``fastbp: error: ...``) instead of the usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
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
    p.add_argument("--load", action="store_true",
                   help="then run every workload again with one core kept busy by another process, with "
                        "fastbp at one thread beside it (fastbp@1)")  # fmt: skip
    p.add_argument("--trained", type=_count, default=0, metavar="N",
                   help="train N more epochs, untimed, between the warm-up and the timed epochs: time a fit "
                        "late in its convergence (default 0)")  # fmt: skip
    p.add_argument("--peers", type=_peer_list, default=None, metavar=",".join(PEERS),
                   help="also time these libraries where installed (never a dependency; "
                        "'not installed' in the table otherwise)")  # fmt: skip
    p.set_defaults(func=_cmd_bench)


# ---------------------------------------------------------------------------------- argument types
def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    """``"256,128"`` -> ``[256, 128]``; ``""`` or ``"none"``: no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer sizes such as 256,128, got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


@dataclass
class _Threads:
    """``--threads``: set for the command, restored after."""

    n: int | None

    def __post_init__(self) -> None:  # check now, before any file is read
        from ._threads import thread_setting

        try:
            with thread_setting(self.n):
                pass
        except ValueError as exc:
            raise CLIError(f"--threads: {exc}") from None

    def __enter__(self) -> None:
        from ._threads import thread_setting

        self._setting = thread_setting(self.n)
        self._setting.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._setting.__exit__(None, None, None)


def _check_out_dir(path: str, option: str) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise CLIError(f"{option}: no such directory for {path!r}")


# ---------------------------------------------------------------------------------- train
def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from .kernels.activations import ACTIVATIONS
    from .optimizers import OPTIMIZERS

    p = subparsers.add_parser(
        "train", help="train an MLP on a CSV or .npz file and save it",
        description=(
            "Train a multilayer perceptron on DATA (a CSV with a header row and numeric feature columns, "
            "or an .npz with arrays X and y) and save it, with its class labels and column names, to --out. "
            "Prints the loss of each epoch and the final metrics."
        ),
    )  # fmt: skip
    p.add_argument("data", metavar="DATA", help="training data: .csv (with --target) or .npz (arrays X, y)")
    p.add_argument("--target", type=_names, default=None, metavar="COL",
                   help="CSV column(s) to predict (comma-separated for several regression targets); "
                        "every other column is a feature")  # fmt: skip
    p.add_argument("--out", default="model.fbp", metavar="PATH", help="model file to write (default: model.fbp)")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                   help="auto (default): an integer or text target with at most "
                        f"{MAX_AUTO_CLASSES} distinct values is classification, anything else regression")  # fmt: skip
    p.add_argument("--hidden", type=_int_list, default=[64], metavar="N,N",
                   help="hidden layer sizes, e.g. 256,128 (default: 64; 'none' for no hidden layer)")  # fmt: skip
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu", help="hidden activation (default relu)")
    p.add_argument("--loss", choices=("mse", "huber", "poisson"), default="mse",
                   help="regression loss (default mse); classification always uses cross_entropy")  # fmt: skip
    p.add_argument("--epochs", type=_positive_int, default=20, metavar="N", help="training epochs (default 20)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="N", help="batch size (default 32)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam",
                   help="optimizer, default settings except --lr (default adam)")  # fmt: skip
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default: the optimizer's)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling and the split (default 0)")
    p.add_argument("--validation-split", type=_fraction, default=0.1, metavar="F",
                   help="fraction of rows, drawn at random (stratified by class for classification), "
                        "held out (default 0.1; 0: none)")  # fmt: skip
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="feed the features as they are; by default the model's first layer is a Normalization "
                        "that standardises each numeric feature with the training rows' mean and standard deviation "
                        "(stored in the model file, so predict and ONNX take raw features)")  # fmt: skip
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="default float32")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="fastbp threads (default: all)")
    p.add_argument("--quiet", action="store_true", help="print only the final metrics, not every epoch")
    p.set_defaults(func=_cmd_train)


def _split(n: int, fraction: float, seed: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows), a seeded random split of ``round(n * fraction)`` rows;
    with class ``labels``, stratified: each class gives its share of them (largest
    remainders first, never a class's last row), so a file whose rows come sorted by class
    still validates on every class in proportion."""
    rng = np.random.default_rng(seed)
    n_val = 0 if fraction == 0 else max(1, round(n * fraction))
    if n - n_val < 1:
        raise CLIError(f"--validation-split {fraction} leaves no training rows out of {n}")
    if labels is None or n_val == 0:
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    classes, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes)
    quota = n_val * counts / n
    take = np.floor(quota).astype(int)
    for c in np.argsort(-(quota - take), kind="stable")[: n_val - take.sum()]:
        take[c] += 1
    take = np.minimum(take, counts - 1)
    val = [rng.permutation(np.flatnonzero(codes == c))[: take[c]] for c in range(len(classes))]
    val_rows = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(n), val_rows), val_rows


def _scores(model, X: np.ndarray, y: np.ndarray, classifier: bool) -> dict[str, float]:
    scores = {"loss": model.evaluate(X, y)}
    if classifier:
        scores["accuracy"] = float(np.mean(model.predict(X).argmax(axis=1) == y))
    return scores


def _fmt_scores(scores: dict[str, float], prefix: str = "") -> str:
    return " - ".join(f"{prefix}{k}: {v:.4f}" for k, v in scores.items())


def _cmd_train(args: argparse.Namespace) -> int:
    import fastbp as fb

    from .io import save_model
    from .optimizers import get_optimizer

    _check_out_dir(args.out, "--out")
    threads = _Threads(args.threads)
    dtype = np.dtype(args.dtype)
    data = read_training_data(args.data, args.target, dtype)
    task, y, classes = prepare_targets(data, args.task, args.data)
    classifier = task == "classification"
    if classifier:
        loss, k = "cross_entropy", len(classes)
    else:
        loss, k = args.loss, 1 if y.ndim == 1 else y.shape[1]
        if loss == "poisson" and (y < 0).any():
            raise CLIError(f"{args.data}: --loss poisson needs targets >= 0")
    train_rows, val_rows = _split(len(y), args.validation_split, args.seed, y if classifier else None)
    X_train, y_train, X_val, y_val = data.X[train_rows], y[train_rows], data.X[val_rows], y[val_rows]

    optimizer = get_optimizer(args.optimizer)
    if args.lr is not None:
        optimizer = type(optimizer)(**{**optimizer.get_config(), "lr": args.lr})
    layers = [fb.Dense(units, activation=args.activation) for units in args.hidden] + [fb.Dense(k)]
    if args.standardize:
        layers.insert(0, _normalization(X_train, data.encoding))
    model = fb.Sequential(layers, loss=loss, optimizer=optimizer, seed=args.seed, dtype=dtype,
                          metrics=["accuracy"] if classifier else None)  # fmt: skip
    kind = f"{len(classes)}-class classification" if classifier else f"regression ({loss}, {k} output(s))"
    print(f"training on {len(y_train)} rows x {data.X.shape[1]} features ({len(y_val)} held out): {kind}, "
          f"layers {' -> '.join(str(n) for n in [data.X.shape[1], *args.hidden, k])}")  # fmt: skip
    text = data.encoding.text_columns if data.encoding is not None else []
    if text or args.standardize:
        print("features: " + "; ".join(
            ([f"one-hot {', '.join(f'{n} ({c} values)' for n, c in text)}"] if text else [])
            + (["numeric ones standardised with the training rows' mean and std"] if args.standardize else [])
        ))  # fmt: skip

    validation = {"validation_data": (X_val, y_val)} if len(y_val) else {}
    with threads:
        try:  # verbose=2: fit prints one line per epoch, with the validation scores
            model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                      verbose=0 if args.quiet else 2, **validation)  # fmt: skip
        except fb.TrainingDivergedError as exc:
            raise CLIError(f"training diverged at epoch {exc.epoch + 1}, batch {exc.batch + 1}; try a smaller "
                           "--lr. Nothing was saved.") from None  # fmt: skip
        final = _fmt_scores(_scores(model, X_train, y_train, classifier))
        if len(y_val):
            final += " - " + _fmt_scores(_scores(model, X_val, y_val, classifier), "val_")
    print(f"final: {final}")
    extra = {
        "task": task,
        "classes": classes,
        "feature_names": data.feature_names,
        "encoding": None if data.encoding is None else data.encoding.to_json(),
        "target_names": data.target_names,
        "trained_on": os.path.basename(args.data),
    }
    save_model(model, args.out, extra=extra)
    print(f"wrote {args.out} ({model.count_params()} parameters)")
    return 0


def _normalization(X_train: np.ndarray, encoding: Encoding | None):
    """A Normalization layer adapted to the training rows; one-hot features pass unchanged
    (mean 0, variance 1)."""
    import fastbp as fb

    norm = fb.Normalization().adapt(X_train)
    if encoding is None or not encoding.text_columns:
        return norm
    onehot = encoding.onehot_mask()
    return fb.Normalization(mean=np.where(onehot, 0.0, norm.mean), variance=np.where(onehot, 1.0, norm.variance))


# ---------------------------------------------------------------------------------- predict
def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict", help="predict with a saved model, streaming a CSV or .npz to a CSV",
        description=(
            "Predict every row of DATA (a CSV with the model's feature columns, by name when the model was "
            "trained by 'fastbp train', or an .npz with an array X) and write one CSV row per input row: the "
            "predicted class label for a classifier (and the class probabilities with --proba), the outputs "
            "otherwise. The input is read and written in chunks, so it may be larger than memory."
        ),
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="model file written by 'fastbp train' or Sequential.save")
    p.add_argument("data", metavar="DATA", help="rows to predict: .csv or .npz (array X)")
    p.add_argument("--out", default=None, metavar="PATH", help="CSV file to write (default: standard output)")
    p.add_argument("--proba", action="store_true", help="classifiers: also write one probability column per class")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="fastbp threads (default: all)")
    p.set_defaults(func=_cmd_predict)


def _load_model(path: str):
    from .io import read_model

    if not Path(path).is_file():
        raise CLIError(f"{path}: no such model file")
    return read_model(path)


def _output_columns(model, extra: dict, proba: bool) -> tuple[bool, list, list[str]]:
    """(is a classifier, class labels, header)."""
    k = model.n_outputs
    targets = extra.get("target_names")
    if model.loss == "cross_entropy":
        classes = extra.get("classes")
        if not isinstance(classes, list) or len(classes) != k:
            classes = list(range(k))
        name = targets[0] if isinstance(targets, list) and len(targets) == 1 else "prediction"
        return True, classes, [str(name)] + ([f"proba_{c}" for c in classes] if proba else [])
    if isinstance(targets, list) and len(targets) == k:
        return False, [], [str(t) for t in targets]
    return False, [], ["prediction"] if k == 1 else [f"output_{j}" for j in range(k)]


def _feature_chunks(path: str, model, feature_names: list | None, encoding: Encoding | None = None
                    ) -> Iterator[np.ndarray]:  # fmt: skip
    """The model's features from DATA, ``PREDICT_CHUNK_ROWS`` rows at a time (a CSV's
    columns encoded as at training, when the model file records how)."""
    n_features = model.n_features
    if file_kind(path) == "npz":
        X = read_npz(path, model.dtype, need_y=False).X
        if X.shape[1] != n_features:
            raise CLIError(f"{path}: X has {X.shape[1]} columns, but the model expects {n_features} features")
        for start in range(0, X.shape[0], PREDICT_CHUNK_ROWS):
            yield X[start : start + PREDICT_CHUNK_ROWS]
        return
    with CSV(path) as table:
        if encoding is not None and encoding.width == n_features:
            cols = table.columns(encoding.names, "a feature the model was trained on")
            for rows, lines in table.chunks(PREDICT_CHUNK_ROWS):
                yield encoding.encode(table, rows, lines, cols, model.dtype)
            return
        if isinstance(feature_names, list) and len(feature_names) == n_features:
            cols = table.columns([str(n) for n in feature_names], "a feature the model was trained on")
        elif len(table.header) == n_features:
            cols = list(range(n_features))
        else:
            raise CLIError(f"{path}: the model records no feature names, so DATA must have exactly its "
                           f"{n_features} feature columns; it has {len(table.header)}")  # fmt: skip
        for rows, lines in table.chunks(PREDICT_CHUNK_ROWS):
            yield table.numbers(rows, lines, cols, model.dtype)


def _format_numbers(values: np.ndarray) -> list[list[str]]:
    """Shortest text that reads back to the same float32/float64 value."""
    if values.dtype == np.float32:  # str of a NumPy float32 is its shortest round-trip text
        return [[str(v) for v in row] for row in values]
    return [[repr(v) for v in row] for row in values.tolist()]


def _cmd_predict(args: argparse.Namespace) -> int:
    from .io import atomic_write

    threads = _Threads(args.threads)
    model_file = _load_model(args.model)
    model = model_file.model
    if not model.built:
        raise CLIError(f"{args.model}: the model was never trained (it has no weights)")
    file_kind(args.data)
    if args.out is not None:
        _check_out_dir(args.out, "--out")
    classifier, classes, header = _output_columns(model, model_file.extra, args.proba)
    labels = np.array([str(c) for c in classes], dtype=object)

    def write_all(text: io.TextIOBase) -> int:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        n = 0
        with threads:
            extra = model_file.extra
            encoding = Encoding.from_json(extra.get("encoding"))
            for X in _feature_chunks(args.data, model, extra.get("feature_names"), encoding):
                out = model.predict(X)
                if classifier:
                    rows = labels[out.argmax(axis=1)].reshape(-1, 1).tolist()
                    if args.proba:
                        rows = [r + p for r, p in zip(rows, _format_numbers(out))]
                else:
                    rows = _format_numbers(out)
                writer.writerows(rows)
                n += len(rows)
        return n

    if args.out is None:
        write_all(sys.stdout)
        return 0
    with atomic_write(args.out) as raw:  # a failure halfway leaves no partial file
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        n = write_all(text)
        text.flush()
        text.detach()
    print(f"wrote {n} predictions to {args.out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------- info
def _add_info(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="describe a model file",
                              description="Print a model file's architecture, loss, optimizer, dtype, parameter "
                                          "count, format version and the extra data saved with it.")  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="model file (.fbp)")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    model_file = _load_model(args.model)
    model, meta = model_file.model, model_file.meta
    print(f"model file: {args.model} (format {meta['format']} version {meta['format_version']}, "
          f"written by fastbp {meta['fastbp_version']})")  # fmt: skip
    n_in = "?" if model.n_features is None else model.n_features
    print(f"architecture: {n_in} inputs -> {model.n_outputs} outputs, {len(model.layers)} layers")
    for i, layer in enumerate(model.layers):
        print(f"  ({i}) {layer!r}")
    print(f"loss: {model.loss}")
    print(f"optimizer: {model.optimizer!r}")
    print(f"dtype: {model.dtype.name}")
    print(f"parameters: {model.count_params()}" + ("" if model.built else " (not built: no weights yet)"))
    print(f"optimizer steps: {meta['step']}")
    print(f"seed: {model.seed}")
    for key, value in model_file.extra.items():
        print(f"extra.{key}: {json.dumps(value, ensure_ascii=False)}")
    return 0


def _add_warmup(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "warmup", help="compile the kernels ahead of time (for an image build or a CI step)",
        description="Compile fastbp's kernels, or load them from Numba's cache, so that the first fit or "
                    "predict of a later process does not wait for the compiler: run it in a Docker image's "
                    "build step or a CI job's setup, with the same NUMBA_CACHE_DIR (if any) as the runs "
                    "that follow, on a machine of the same CPU kind.",
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="a model file (.fbp) whose network to warm up (default: a network that takes every "
                        "path, for --dtype)")  # fmt: skip
    p.add_argument("--dtype", choices=("float32", "float64"), action="append",
                   help="float dtype to compile for, without MODEL (repeat for both; default float32)")
    p.set_defaults(func=_cmd_warmup)


def _cmd_warmup(args: argparse.Namespace) -> int:
    import numba

    from . import _config
    from ._warmup import warmup

    if args.model is not None and args.dtype:
        raise CLIError("--dtype: give a dtype or a MODEL, not both (a model file brings its own dtype)")
    if args.model is not None:
        model = _load_model(args.model).model
        jobs = [(model.dtype.name, model)]
    else:
        jobs = [(dtype, None) for dtype in dict.fromkeys(args.dtype or ["float32"])]
    where = numba.config.CACHE_DIR or "__pycache__ folders next to fastbp's sources"
    if not _config.CACHE:
        where = "none writable, so nothing was kept for later processes: set NUMBA_CACHE_DIR"
    for dtype, model in jobs:
        seconds = warmup(model, dtype=dtype)  # a model brings its own dtype
        print(f"fastbp kernels for {dtype} compiled or loaded from the cache in {seconds:.2f} s (cache: {where})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``fastbp`` argument parser, one subparser per command."""
    from . import __version__

    parser = _Parser(prog=PROG, description="fastbp: MLPs trained by backpropagation, fast, on CPU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(subparsers)
    _add_predict(subparsers)
    _add_info(subparsers)
    _add_bench(subparsers)
    _add_warmup(subparsers)
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
                                  threads=args.threads, peers=args.peers, load=args.load,
                                  trained=args.trained, out=sys.stdout)  # fmt: skip
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
    except BrokenPipeError:  # e.g. `fastbp predict ... | head`: the reader left, which is not an error
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except Exception as exc:  # one line, never a traceback
        if os.environ.get("FASTBP_DEBUG"):
            raise
        print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr)
        return 1


def _describe(exc: Exception) -> str:
    from .io import ModelFileError

    if isinstance(exc, CLIError | ModelFileError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, ValueError | TypeError | OSError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc} (set FASTBP_DEBUG=1 for the traceback)"
