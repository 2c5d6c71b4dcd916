"""Model files: :func:`save_model` (``Sequential.save``) and :func:`load` (``fb.load``).

A model file holds the architecture, the weights, the optimizer state, the step count and
the random generator's state, so a loaded model predicts bit for bit as the saved one and
continues ``fit`` exactly where it stopped. Loading never unpickles anything: every entry
is plain numbers or JSON, and every field is checked before a model is built. By convention
the files end in ``.fbp``.

File format, version 2
----------------------
Version 2 adds the ``Normalization`` layer class (its ``mean`` and ``variance`` are in its
config, as JSON numbers, which round-trip float64 exactly); everything else is version 1's,
and version-1 files load unchanged.

An uncompressed ZIP archive, as written by :func:`numpy.savez` (every entry stored, not
deflated), holding ``.npy`` entries:

``meta.npy``
    1-D ``uint8`` array: UTF-8 JSON text (an object; no NaN or infinity anywhere), with
    ``format``          ``"fastbp-model"``
    ``format_version``  ``2`` (``1`` in older files); a file with a higher number needs a
                        newer fastbp
    ``fastbp_version``  version of fastbp that wrote the file (information only)
    ``layers``          ``[{"class": "Dense", "config": {...}}, ...]``: each layer's class
                        name (from a fixed allow-list) and ``get_config()``
    ``loss``            loss name, e.g. ``"cross_entropy"``
    ``optimizer``       ``{"class": "Adam", "config": {...}}``: class name and ``get_config()``;
                        an ``lr`` schedule is itself ``{"class": "StepDecay", "config": {...}}``
    ``seed``            int or null
    ``dtype``           ``"float32"`` or ``"float64"``
    ``metrics``         list of metric names
    ``n_features``      input width, or null for a model that was never built (then the
                        file holds no arrays)
    ``step``            optimizer steps taken so far (Adam's bias correction uses it)
    ``rng_state``       ``numpy.random.Generator.bit_generator.state`` (a JSON object)
    ``arrays``          ``{"theta": {"dtype": "float32", "shape": [n], "sha256": "..."}, ...}``:
                        one record per array entry; ``sha256`` is the hex SHA-256 of the
                        array's data bytes (the ``.npy`` entry after its header)
    ``extra``           a JSON object chosen by whoever saved the file (the CLI stores class
                        labels, target and feature names there), ``{}`` if none

``theta.npy``, ``m.npy``, ``v.npy`` (built models only)
    1-D arrays of the model's dtype. ``theta`` is every parameter, flat: all weight
    matrices first (layer by layer, each ``W`` of shape ``(n_in, n_out)`` in C order), then
    all bias vectors. ``m`` and ``v`` are the optimizer's first- and second-moment (or
    momentum) buffers, the same length as ``theta``, or empty when the optimizer does not
    use them.

Reading a file without fastbp::

    import json, zipfile, numpy as np
    with np.load("model.fbp", allow_pickle=False) as f:
        meta = json.loads(f["meta"].tobytes().decode("utf-8"))
        theta = f["theta"]

Files are written atomically: to a temporary file in the same folder, flushed to disk, then
renamed over ``path``, so a crash or an error never leaves a half-written model there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from . import layers as _layers_module
from . import optimizers as _optimizers_module
from ._plan import parameter_count
from .errors import ModelFileError as ModelFileError  # re-exported: fastbp.io.ModelFileError
from .model import Sequential
from .state import TrainingState

FORMAT = "fastbp-model"
FORMAT_VERSION = 2

#: Layer classes a file may name, looked up by these fixed names in ``fastbp.layers``
#: (classes the installed fastbp does not have are skipped). Nothing else is ever imported.
LAYER_CLASSES: tuple[str, ...] = ("Dense", "Dropout", "Normalization")
#: Optimizer classes a file may name: those of ``fastbp.optimizers.OPTIMIZERS``.
OPTIMIZER_CLASSES: tuple[str, ...] = tuple(cls.__name__ for cls in _optimizers_module.OPTIMIZERS.values())
_BIT_GENERATORS: dict[str, type] = {
    cls.__name__: cls
    for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64)
}
_ARRAYS = ("theta", "m", "v")
#: Largest ``meta`` entry accepted, so a hostile file cannot make ``load`` parse gigabytes of JSON.
MAX_META_BYTES = 64 * 2**20
_MAX_NPY_HEADER = 10_000


@dataclass
class ModelFile:
    """What :func:`read_model` returns: the model and the file's metadata."""

    model: Sequential
    #: The validated JSON metadata (see the module docstring); ``meta["extra"]`` is the user dict.
    meta: dict = field(default_factory=dict)

    @property
    def extra(self) -> dict:
        return self.meta["extra"]


def _registry(module: object, names: tuple[str, ...]) -> dict[str, type]:
    return {name: getattr(module, name) for name in names if isinstance(getattr(module, name, None), type)}


def layer_classes() -> dict[str, type]:
    """Name -> class of every layer a model file may contain."""
    return _registry(_layers_module, LAYER_CLASSES)


def schedule_classes() -> dict[str, type]:
    """Name -> class of every learning-rate schedule an optimizer's ``lr`` may hold."""
    try:
        from .schedules import SCHEDULES
    except ImportError:  # a fastbp without schedules
        return {}
    return dict(SCHEDULES)


def optimizer_classes() -> dict[str, type]:
    """Name -> class of every optimizer a model file may name."""
    return _registry(_optimizers_module, OPTIMIZER_CLASSES)


# ---------------------------------------------------------------------------------- saving
def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def _to_json(obj: object, what: str) -> bytes:
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable (no NaN or infinity): {exc}") from None


def _described(obj: object, registry: dict[str, type], kind: str) -> dict:
    name = type(obj).__name__
    if registry.get(name) is not type(obj):
        raise TypeError(f"cannot save {kind} of class {name}: model files hold only {sorted(registry)}")
    config = dict(obj.get_config())
    if callable(config.get("lr")):  # a learning-rate schedule, stored as {"class", "config"} too
        config["lr"] = _described(config["lr"], schedule_classes(), "an lr schedule")
    return {"class": name, "config": config}


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def model_meta(model: Sequential, extra: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON metadata and the arrays that :func:`save_model` writes for ``model``."""
    from . import __version__

    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastbp Sequential, got {type(model).__name__}")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise TypeError(f"extra must be a dict with str keys, got {type(extra).__name__}: {extra!r}")
    arrays: dict[str, np.ndarray] = {}
    state = model.state
    if model.built:
        arrays = {"theta": state.theta, "m": state.m, "v": state.v}
        arrays = {name: np.ascontiguousarray(a, dtype=model.dtype) for name, a in arrays.items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastbp_version": __version__,
        "layers": [_described(layer, layer_classes(), "a layer") for layer in model.layers],
        "loss": model.loss,
        "optimizer": _described(model.optimizer, optimizer_classes(), "an optimizer"),
        "seed": model.seed,
        "dtype": model.dtype.name,
        "metrics": list(model.metrics),
        "n_features": int(model.n_features) if model.built else None,
        "step": int(state.step),
        "rng_state": state.rng.bit_generator.state,
        "arrays": {
            name: {"dtype": a.dtype.name, "shape": list(a.shape), "sha256": _sha256(a)} for name, a in arrays.items()
        },
        "extra": extra,
    }
    _to_json(extra, "extra")  # name the user's argument if it is what fails
    return meta, arrays


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for binary writing; on success flush it to disk
    and rename it over ``path``. On any error (or interrupt) the temporary file is removed
    and an existing file at ``path`` is left untouched.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.bin")
    >>> with atomic_write(target) as f:
    ...     _ = f.write(b"data")
    >>> open(target, "rb").read()
    b'data'
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory")
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _new_file_mode(path: str) -> int:
    """Permission bits for the new file: the old file's, else the usual ``0o666 & ~umask``
    (``mkstemp`` creates files readable by their owner only)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: str) -> None:
    """Make the rename durable where the platform allows opening a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_model(model: Sequential, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write ``model`` to ``path`` in the fastbp model format (see the module docstring).

    Parameters
    ----------
    model : Sequential
        Built or not; an unbuilt model is saved as its configuration only.
    path : str or path-like
        Destination, replaced atomically (``.fbp`` by convention; no suffix is added).
    extra : dict, optional
        JSON-serialisable data stored with the model and returned by :func:`read_model`
        as ``.extra`` (the CLI keeps class labels and column names there).

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastbp as fb
    >>> from fastbp.io import load, save_model
    >>> model = fb.Sequential([fb.Dense(3, input_dim=2)], loss="mse", seed=0)
    >>> model.build(2)
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.fbp")
    >>> save_model(model, path, extra={"note": "demo"})
    >>> x = np.ones((1, 2), dtype=np.float32)
    >>> bool((load(path).predict(x) == model.predict(x)).all())
    True
    """
    meta, arrays = model_meta(model, extra)
    entries = {"meta": np.frombuffer(_to_json(meta, "the model's configuration"), dtype=np.uint8), **arrays}
    with atomic_write(path) as f:
        # an open file object: np.savez would append ".npz" to a str path without that suffix
        np.savez(f, **entries)


# ---------------------------------------------------------------------------------- loading
def load(path: str | os.PathLike) -> Sequential:
    """Read a model written by :meth:`Sequential.save` / :func:`save_model`.

    The loaded model predicts bit for bit as the saved one, and ``fit`` continues from the
    same weights, optimizer state, step count and random generator state.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        (:class:`ModelFileError`) the file is not a valid model file: not a ZIP, truncated,
        corrupted (checksum mismatch), inconsistent, or written by a newer fastbp. Nothing
        in the file is ever unpickled or imported.
    """
    return read_model(path).model


def read_model(path: str | os.PathLike) -> ModelFile:
    """Like :func:`load`, also returning the file's metadata (``.meta``, ``.extra``)."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError as is
        try:
            return _read(f, path)
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError,
                ValueError, TypeError, KeyError, OverflowError, MemoryError) as exc:  # fmt: skip
            # zipfile/zlib/npy-header failures on a damaged file: one clear error naming it
            raise ModelFileError(f"{path}: not a readable fastbp model file ({type(exc).__name__}: {exc})") from None


def _read(f: IO[bytes], path: str) -> ModelFile:
    def bad(reason: str) -> ModelFileError:
        return ModelFileError(f"{path}: {reason}")

    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        raise bad("not a fastbp model file (not a ZIP archive, or truncated)") from None
    with zf:
        infos = _check_entries(zf, os.fstat(f.fileno()).st_size, path)
        meta = _read_meta(zf, infos["meta"], path)
        model, expected, rng = _model_from_meta(meta, path)
        names = {n for n in infos if n != "meta"}
        if names != set(expected):
            missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
            raise bad(f"the archive's arrays do not match the model: missing {missing}, unexpected {unexpected}")
        arrays = {name: _read_array(zf, infos[name], name, meta, size, model.dtype, path)
                  for name, size in expected.items()}  # fmt: skip
    _restore_state(model, meta, arrays, rng)
    return ModelFile(model=model, meta=meta)


def _check_entries(zf: zipfile.ZipFile, file_size: int, path: str) -> dict[str, zipfile.ZipInfo]:
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy") or name[:-4] not in ("meta", *_ARRAYS):
            raise ModelFileError(f"{path}: unexpected entry {name!r} in the archive")
        if name[:-4] in infos:
            raise ModelFileError(f"{path}: duplicate entry {name!r} in the archive")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{path}: entry {name!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(f"{path}: entry {name!r} is compressed; model files store entries uncompressed")
        if info.file_size > file_size:
            raise ModelFileError(f"{path}: entry {name!r} claims {info.file_size} bytes, more than the file holds")
        infos[name[:-4]] = info
    if "meta" not in infos:
        raise ModelFileError(f"{path}: not a fastbp model file (no 'meta' entry)")
    return infos


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> tuple[tuple, np.dtype, memoryview]:
    """(shape, dtype, data bytes) of a stored ``.npy`` entry, refusing object arrays before
    reading any data (the only ``.npy`` content that would need unpickling)."""
    name = info.filename
    raw = zf.read(info)  # checks the entry's CRC-32
    buf = io.BytesIO(raw)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf, max_header_size=_MAX_NPY_HEADER)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf, max_header_size=_MAX_NPY_HEADER)
    else:
        raise ModelFileError(f"{path}: entry {name!r} has unsupported .npy version {version}")
    if dtype.hasobject or dtype.kind not in "uif" or dtype.fields is not None or dtype.subdtype is not None:
        raise ModelFileError(f"{path}: entry {name!r} holds {dtype} data (possibly pickled objects), "
                             "not numbers; refusing to read it")  # fmt: skip
    if len(shape) != 1 or fortran:
        raise ModelFileError(f"{path}: entry {name!r} must be a 1-D array, got shape {shape}")
    data = memoryview(raw)[buf.tell() :]
    if len(data) != shape[0] * dtype.itemsize:
        raise ModelFileError(f"{path}: entry {name!r} holds {len(data)} data bytes, "
                             f"but its header says {shape[0]} x {dtype.itemsize}")  # fmt: skip
    return shape, dtype, data


def _read_meta(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> dict:
    if info.file_size > MAX_META_BYTES:
        raise ModelFileError(f"{path}: the 'meta' entry is {info.file_size} bytes (more than {MAX_META_BYTES})")
    _, dtype, data = _read_npy(zf, info, path)
    if dtype != np.uint8:
        raise ModelFileError(f"{path}: the 'meta' entry must be uint8 (UTF-8 JSON bytes), got {dtype}")

    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not allowed")

    try:
        meta = json.loads(bytes(data).decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: the 'meta' entry is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the 'meta' entry must be a JSON object, got {type(meta).__name__}")
    return meta


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _model_from_meta(meta: dict, path: str) -> tuple[Sequential, dict[str, int], np.random.Generator]:
    """Validate every field and construct the (unbuilt) model through the real constructors.

    Returns the model, the expected length of each array entry and the restored generator.
    """

    def bad(reason: str) -> ModelFileError:
        return ModelFileError(f"{path}: {reason}")

    def get(key: str, kinds: type | tuple, what: str) -> Any:
        if key not in meta:
            raise bad(f"'meta' has no {key!r} field")
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise bad(f"'meta' field {key!r} must be {what}, got {type(value).__name__}: {value!r:.100}")
        return value

    if meta.get("format") != FORMAT:
        raise bad(f"not a fastbp model file (format {meta.get('format')!r:.60}, expected {FORMAT!r})")
    version = get("format_version", int, "an int")
    if version > FORMAT_VERSION:
        raise bad(f"written by a newer fastbp, format version {version} > {FORMAT_VERSION}; upgrade fastbp to read it")
    if version < 1:
        raise bad(f"invalid format version {version}")
    get("fastbp_version", str, "a str")
    layer_specs = get("layers", list, "a list")
    loss = get("loss", str, "a str")
    opt_spec = get("optimizer", dict, "an object")
    seed = get("seed", (int, type(None)), "an int or null")
    dtype = get("dtype", str, "'float32' or 'float64'")
    metrics = get("metrics", list, "a list")
    n_features = get("n_features", (int, type(None)), "an int or null")
    step = get("step", int, "an int")
    rng_state = get("rng_state", dict, "an object")
    records = get("arrays", dict, "an object")
    extra = get("extra", dict, "an object")
    del extra  # any JSON object is fine
    if not 0 <= step < 2**62:
        raise bad(f"'meta' field 'step' must be in [0, 2**62), got {step}")
    if n_features is not None and not 1 <= n_features < 2**31:
        raise bad(f"'meta' field 'n_features' must be a positive int, got {n_features}")

    layers = [_build_object(spec, layer_classes(), f"layers[{i}]", path) for i, spec in enumerate(layer_specs)]
    opt_config = opt_spec.get("config") if isinstance(opt_spec, dict) else None
    if isinstance(opt_config, dict) and isinstance(opt_config.get("lr"), dict):  # an lr schedule
        lr = _build_object(opt_config["lr"], schedule_classes(), "optimizer lr schedule", path)
        opt_spec = {**opt_spec, "config": {**opt_config, "lr": lr}}
    optimizer = _build_object(opt_spec, optimizer_classes(), "optimizer", path)
    try:
        model = Sequential(layers, loss=loss, optimizer=optimizer, seed=seed, dtype=dtype, metrics=metrics)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise bad(f"invalid model configuration: {exc}") from None
    if not model.layers:
        raise bad("the model has no layers")
    rng = _generator(rng_state, path)

    _check_widths(model, n_features, path)
    expected: dict[str, int] = {}
    if n_features is not None:
        try:
            n_params = parameter_count(n_features, model.layers)
        except (OverflowError, ValueError, TypeError) as exc:
            raise bad(f"invalid architecture for {n_features} features: {exc}") from None
        opt = model.optimizer
        expected = {"theta": n_params, "m": n_params if opt.uses_m else 0, "v": n_params if opt.uses_v else 0}
    if set(records) != set(expected):
        raise bad(f"'meta' field 'arrays' lists {sorted(records)}, expected {sorted(expected)}")
    for name, size in expected.items():
        rec = records[name]
        if not isinstance(rec, dict) or rec.get("dtype") != model.dtype.name or rec.get("shape") != [size]:
            raise bad(f"array {name!r} must be {model.dtype.name} of shape [{size}] for this architecture and "
                      f"optimizer, but 'meta' records {rec!r:.200}")  # fmt: skip
        digest = rec.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise bad(f"array {name!r} has no valid 'sha256' in 'meta'")
    return model, expected, rng


def _build_object(spec: object, registry: dict[str, type], where: str, path: str) -> Any:
    """``registry[spec["class"]](**spec["config"])``: only allow-listed classes, and their
    own constructors validate the configuration."""
    if not isinstance(spec, dict) or set(spec) != {"class", "config"}:
        raise ModelFileError(f"{path}: {where} must be an object with 'class' and 'config', got {spec!r:.200}")
    name, config = spec["class"], spec["config"]
    if not isinstance(name, str) or name not in registry:
        raise ModelFileError(f"{path}: {where} has class {name!r:.100}, which is not allowed; "
                             f"expected one of {sorted(registry)}")  # fmt: skip
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: {where} config must be an object, got {type(config).__name__}")
    try:
        return registry[name](**config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: {where} ({name}) has an invalid config: {exc}") from None


def _check_widths(model: Sequential, n_features: int | None, path: str) -> None:
    """Each layer's recorded ``input_dim`` must match the width flowing into it (layers
    without ``units``, such as dropout, keep the width)."""
    width = n_features
    for i, layer in enumerate(model.layers):
        input_dim = getattr(layer, "input_dim", None)
        if input_dim is not None and width is not None and input_dim != width:
            raise ModelFileError(f"{path}: layers[{i}] has input_dim={input_dim}, but {width} values flow into it")
        width = getattr(layer, "units", None) or width or input_dim


def _generator(state: dict, path: str) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ModelFileError(f"{path}: rng_state has bit generator {name!r:.60}; expected one of "
                             f"{sorted(_BIT_GENERATORS)}")  # fmt: skip
    bit_generator = _BIT_GENERATORS[name]()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{path}: invalid rng_state ({type(exc).__name__}: {exc})") from None
    return np.random.Generator(bit_generator)


def _read_array(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, meta: dict, size: int, dtype: np.dtype,
                path: str) -> np.ndarray:  # fmt: skip
    shape, stored, data = _read_npy(zf, info, path)
    if stored.kind != dtype.kind or stored.itemsize != dtype.itemsize or shape != (size,):
        raise ModelFileError(f"{path}: array {name!r} must be {dtype} of shape ({size},) for this architecture "
                             f"and optimizer, got {stored} of shape {shape}")  # fmt: skip
    if hashlib.sha256(data).hexdigest() != meta["arrays"][name]["sha256"]:
        raise ModelFileError(f"{path}: array {name!r} is corrupted (its SHA-256 does not match the one in 'meta')")
    arr = np.frombuffer(data, dtype=stored).astype(dtype)  # native byte order, a writable copy
    if not np.isfinite(arr).all():
        raise ModelFileError(f"{path}: array {name!r} contains NaN or infinity")
    return arr


def _restore_state(model: Sequential, meta: dict, arrays: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Build the validated model and put the file's numbers and generator into it."""
    n_features = meta["n_features"]
    if n_features is not None:
        model.build(n_features)  # allocates and binds the layers; its random draws are overwritten below
    # after build, whose initialisation drew from the constructor's generator
    model.set_state(TrainingState(arrays.get("theta"), arrays.get("m"), arrays.get("v"), meta["step"], rng))
