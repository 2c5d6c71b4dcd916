"""Reading tabular data for the command line: CSV and ``.npz`` files, targets, and the
encoding that turns a CSV's columns into a model's input features.

A CSV's feature columns are numbers or text. A column whose every value is a finite number
is one feature; a column of text (most of its values not numbers) is one-hot encoded, one
feature per distinct value (its vocabulary, stored in the model file by ``fastbp train`` and
applied by ``fastbp predict``, where an unseen value encodes as all zeros, as
scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``); a column of numbers with a few
other values is an error naming the first such cell (likely a typo or a missing value).
Files are read in chunks, twice for training (once to learn each column's kind and
vocabulary, once to encode), so memory holds the encoded array, not the text.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CLIError

#: Rows read (and, by ``fastbp predict``, predicted and written) at a time.
CHUNK_ROWS = 65536
#: ``--task auto``: an integer or text target with at most this many distinct values is a class label.
MAX_AUTO_CLASSES = 50
#: Most distinct values a text feature column may have for one-hot encoding.
MAX_CATEGORIES = 1000


@dataclass
class Data:
    """Features (float, the model's dtype) and raw targets read from a CSV or an npz."""

    X: np.ndarray
    y: np.ndarray | None  # (n,) or (n, t): numbers, or text labels from a CSV
    feature_names: list[str] | None
    target_names: list[str] | None
    encoding: Encoding | None = None  # CSV input: how its columns became X


def file_kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise CLIError(f"{path}: expected a .csv or .npz file, got {suffix or 'no suffix'!r}")
    if not Path(path).is_file():
        raise CLIError(f"{path}: no such file")
    return suffix[1:]


class CSV:
    """A CSV file read row by row: the header, then chunks of rows with their line numbers."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed by close())
        self._reader = csv.reader(self._file)
        try:
            header = next(self._reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            self.close()
            raise CLIError(f"{path}: not a readable CSV file ({exc})") from None
        if not header or not any(h.strip() for h in header):
            self.close()
            raise CLIError(f"{path}: empty file; expected a header row of column names")
        self.header = [h.strip() for h in header]
        seen = set()
        for name in self.header:
            if not name:
                self.close()
                raise CLIError(f"{path}: the header has an empty column name")
            if name in seen:
                self.close()
                raise CLIError(f"{path}: the header names column {name!r} twice")
            seen.add(name)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CSV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def columns(self, names: Sequence[str], what: str) -> list[int]:
        missing = [n for n in names if n not in self.header]
        if missing:
            raise CLIError(f"{self.path}: no column named {missing[0]!r} ({what}); columns are: "
                           f"{', '.join(self.header)}")  # fmt: skip
        return [self.header.index(n) for n in names]

    def chunks(self, rows: int) -> Iterator[tuple[list[list[str]], list[int]]]:
        """Chunks of up to ``rows`` rows (blank lines skipped) and their line numbers."""
        width = len(self.header)
        chunk: list[list[str]] = []
        lines: list[int] = []
        try:
            for row in self._reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                line = self._reader.line_num
                if len(row) != width:
                    raise CLIError(f"{self.path}, line {line}: {len(row)} fields, but the header has {width}")
                chunk.append(row)
                lines.append(line)
                if len(chunk) == rows:
                    yield chunk, lines
                    chunk, lines = [], []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CLIError(f"{self.path}, line {self._reader.line_num}: not readable CSV ({exc})") from None
        if chunk:
            yield chunk, lines

    def numbers(self, rows: list[list[str]], lines: list[int], cols: list[int], dtype: np.dtype) -> np.ndarray:
        """The given columns of ``rows`` as a finite float array; errors name the cell."""
        cells = [[row[c] for c in cols] for row in rows]
        try:
            arr = np.array(cells, dtype=np.float64).reshape(len(rows), len(cols))
        except ValueError:
            arr = None
        if arr is None or not np.isfinite(arr).all():
            for r, row in enumerate(cells):
                for j, cell in enumerate(row):
                    try:
                        ok = math.isfinite(float(cell))
                    except ValueError:
                        ok = False
                    if not ok:
                        name = self.header[cols[j]]
                        what = "an empty value" if not cell.strip() else f"{cell!r}, not a finite number"
                        raise CLIError(f"{self.path}, line {lines[r]}: column {name!r} has {what}")
        return arr.astype(dtype, copy=False)


def read_npz(path: str, dtype: np.dtype, need_y: bool) -> Data:
    try:
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
            for key in ("X", "y") if need_y else ("X",):
                if key not in names:
                    raise CLIError(f"{path}: no array named {key!r} (it holds {sorted(names)}); expected X and y")
            X = f["X"]
            y = f["y"] if "y" in names else None
    except CLIError:
        raise
    except (ValueError, OSError, EOFError) as exc:  # not a zip, pickled object arrays, truncated
        raise CLIError(f"{path}: not a readable .npz file ({exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf" or X.shape[0] == 0 or X.shape[1] == 0:
        raise CLIError(f"{path}: X must be a non-empty 2-D numeric array, got {X.dtype} of shape {X.shape}")
    X = X.astype(dtype)
    if not np.isfinite(X).all():
        raise CLIError(f"{path}: X contains NaN or infinity")
    if y is not None and need_y:
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0] or y.dtype.kind not in "biufUS":
            raise CLIError(f"{path}: y must be numbers or text of shape ({X.shape[0]},) or ({X.shape[0]}, k), "
                           f"got {y.dtype} of shape {y.shape}")  # fmt: skip
    return Data(X=X, y=y, feature_names=None, target_names=None)


@dataclass
class Encoding:
    """How a CSV's feature columns become the model's input: for each column (by name),
    ``None`` (a number: one feature) or its sorted vocabulary (text: one-hot, one feature
    per value, in that order)."""

    names: list[str]
    categories: list[list[str] | None]

    @property
    def width(self) -> int:
        return sum(1 if c is None else len(c) for c in self.categories)

    @property
    def text_columns(self) -> list[tuple[str, int]]:
        return [(n, len(c)) for n, c in zip(self.names, self.categories) if c is not None]

    def to_json(self) -> list[dict]:
        return [{"name": n, "categories": c} for n, c in zip(self.names, self.categories)]

    @classmethod
    def from_json(cls, spec: object) -> Encoding | None:
        """The encoding a model file's ``extra`` records, or None if it records none (or
        something else: files written by other tools)."""
        if not isinstance(spec, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str)
            and (c.get("categories") is None or isinstance(c.get("categories"), list)) for c in spec
        ):  # fmt: skip
            return None
        return cls([c["name"] for c in spec], [c.get("categories") for c in spec])

    def onehot_mask(self) -> np.ndarray:
        """Which encoded features are one-hot (bool, ``width`` long)."""
        return np.concatenate([np.zeros(1, bool) if c is None else np.ones(len(c), bool) for c in self.categories])

    def encode(
        self, table: CSV, rows: list[list[str]], lines: list[int], cols: list[int], dtype: np.dtype
    ) -> np.ndarray:  # fmt: skip
        """Rows of ``table`` (its columns ``cols``, in this encoding's order) as features."""
        out = np.zeros((len(rows), self.width), dtype=dtype)
        numeric = [j for j, c in enumerate(self.categories) if c is None]
        starts = np.cumsum([0] + [1 if c is None else len(c) for c in self.categories])
        if numeric:
            out[:, starts[numeric]] = table.numbers(rows, lines, [cols[j] for j in numeric], dtype)
        for j, cats in enumerate(self.categories):
            if cats is not None:
                index = {v: starts[j] + i for i, v in enumerate(cats)}
                for r, row in enumerate(rows):
                    k = index.get(row[cols[j]].strip())
                    if k is not None:  # an unseen value: all zeros
                        out[r, k] = 1
        return out


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def learn_encoding(table: CSV, cols: list[int], chunk_rows: int = CHUNK_ROWS) -> Encoding:
    """Read every row of ``table`` once and decide each column's kind (module docstring):
    numbers; text (more values that are not numbers than values that are), with its
    vocabulary; or an error at the first cell that is not a number."""
    n_num = [0] * len(cols)
    n_text = [0] * len(cols)
    first_bad: list[tuple[list[list[str]], list[int]] | None] = [None] * len(cols)
    values: list[set[str]] = [set() for _ in cols]
    for rows, lines in table.chunks(chunk_rows):
        for j, c in enumerate(cols):
            cells = [row[c] for row in rows]
            try:
                arr = np.array(cells, dtype=np.float64)
                fast = bool(np.isfinite(arr).all())
            except ValueError:
                fast = False
            if fast:
                n_num[j] += len(cells)
                if len(values[j]) <= MAX_CATEGORIES:
                    values[j].update(cell.strip() for cell in cells)
                continue
            for r, cell in enumerate(cells):
                if _is_number(cell):
                    n_num[j] += 1
                else:
                    n_text[j] += 1
                    if first_bad[j] is None:
                        first_bad[j] = ([rows[r]], [lines[r]])
                if len(values[j]) <= MAX_CATEGORIES:
                    values[j].add(cell.strip())
    names = [table.header[c] for c in cols]
    categories: list[list[str] | None] = []
    for j, c in enumerate(cols):
        if n_text[j] == 0:
            categories.append(None)
        elif n_text[j] > n_num[j]:
            if len(values[j]) > MAX_CATEGORIES:
                raise CLIError(f"{table.path}: column {names[j]!r} holds text with more than {MAX_CATEGORIES} distinct "
                               "values, too many to one-hot encode; drop it or encode it first")  # fmt: skip
            categories.append(sorted(values[j]))
        else:  # mostly numbers: report the first cell that is not one, as for a numeric column
            table.numbers(*first_bad[j], [c], np.dtype(np.float64))
    return Encoding(names, categories)


def read_training_data(path: str, target: list[str] | None, dtype: np.dtype) -> Data:
    if file_kind(path) == "npz":
        return read_npz(path, dtype, need_y=True)
    if not target:
        raise CLIError("--target is required for CSV input: the name of the column to predict")
    with CSV(path) as table:
        t_cols = table.columns(target, "--target")
        f_cols = [c for c in range(len(table.header)) if c not in t_cols]
        if not f_cols:
            raise CLIError(f"{path}: no feature columns besides the target")
        encoding = learn_encoding(table, f_cols)
    with CSV(path) as table:  # again, now that each column's kind is known
        X_parts, y_parts = [], []
        for rows, lines in table.chunks(CHUNK_ROWS):
            X_parts.append(encoding.encode(table, rows, lines, f_cols, dtype))
            y_parts.append(np.array([[row[c].strip() for c in t_cols] for row in rows], dtype=str))
    if not X_parts:
        raise CLIError(f"{path}: no data rows after the header")
    y = np.concatenate(y_parts)
    return Data(X=np.concatenate(X_parts), y=y[:, 0] if len(t_cols) == 1 else y,
                feature_names=[table.header[c] for c in f_cols], target_names=list(target),
                encoding=encoding)  # fmt: skip


def as_numbers(y: np.ndarray) -> np.ndarray | None:
    """``y`` as float64 if every value is a finite number (text parsed), else None."""
    if y.dtype.kind in "biuf":
        return y.astype(np.float64)
    try:
        out = y.astype(np.float64)
    except ValueError:
        return None
    return out if np.isfinite(out).all() else None


def prepare_targets(data: Data, task: str, path: str) -> tuple[str, np.ndarray, list | None]:
    """(task, y for fit, class labels or None), with ``--task auto`` resolved."""
    y = data.y
    numbers = as_numbers(y)
    integral = numbers is not None and bool(np.all(numbers == np.round(numbers)))
    if task == "auto":
        if y.ndim == 2:
            task = "regression"
        else:
            n_distinct = len(np.unique(y if numbers is None else numbers))
            if (integral or numbers is None) and n_distinct <= MAX_AUTO_CLASSES:
                task = "classification"
            elif numbers is None:
                raise CLIError(f"{path}: the target is text with {n_distinct} distinct values (more than "
                               f"{MAX_AUTO_CLASSES}); pass --task classification to train a classifier")  # fmt: skip
            else:
                task = "regression"
    if task == "regression":
        if numbers is None:
            raise CLIError(f"{path}: --task regression needs numeric targets, but the target holds text "
                           f"(for example {first_text(y)!r})")  # fmt: skip
        return task, numbers, None
    if y.ndim == 2:
        raise CLIError(f"{path}: classification needs one target column, got {y.shape[1]}")
    labels = y if numbers is None else (numbers.astype(np.int64) if integral else numbers)
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise CLIError(f"{path}: classification needs at least 2 classes, the target has only {classes.tolist()}")
    return task, codes.astype(np.int64), classes.tolist()


def first_text(y: np.ndarray) -> str:
    for value in y.ravel():
        try:
            float(value)
        except ValueError:
            return str(value)
    return str(y.ravel()[0])
