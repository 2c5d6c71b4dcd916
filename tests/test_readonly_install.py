"""fastbp installed where nothing can be written (a read-only site-packages, a container
image, a shared install): it must import, train and predict, with or without a usable Numba
cache.

How the read-only install is made, honestly: the ``fastbp`` package is copied without any
``__pycache__`` into a fresh folder and ``chmod -R a-w`` is applied. For an ordinary user
that is enough. Root ignores file modes (chmod does not stop root writing, and Numba then
quietly writes its cache into the "read-only" copy), so when the tests run as root the
child interpreter drops to the unprivileged ``nobody`` user (through ``setpriv`` when it
exists, else ``subprocess``'s ``user=``/``group=``), for whom the copy really is read-only;
a probe checks that this user can run the interpreter and cannot write into the copy. If that is impossible (no such
user, or the interpreter is not readable by it) the tests skip and say why; they never
pretend with a setting root ignores. ``HOME`` and ``XDG_CACHE_HOME`` point inside the
read-only folder, so Numba's per-user cache folder cannot be created either.

Two situations, run at the same time in two child interpreters (each compiles the kernels
from scratch, about 30-50 s on 2 cores):

- ``NUMBA_CACHE_DIR`` set to a writable folder (the documented set-up for a read-only
  install, or a container image that runs ``fb.warmup()`` at build time, as this child
  does first): must work, write nothing into the package, and put the cache there; then a
  third child on the same cache trains with both splits, validates, predicts, evaluates
  and takes a gradient without compiling anything (what ``fb.warmup`` promises);
- no writable cache location at all: must still work, compiling in memory.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastbp as fb

PACKAGE = Path(fb.__file__).resolve().parent
TIMEOUT = 420  # seconds per child: a cold compile of every kernel used by fit + predict

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import fastbp as fb
if os.environ.get("NUMBA_CACHE_DIR"):
    fb.warmup()  # the build step of an image; the model below must not notice
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 5)).astype(np.float32)
y = np.stack([X[:, 0] - X[:, 1], np.tanh(X[:, 2])], axis=1)
model = fb.Sequential([fb.Dense(8, activation="tanh"), fb.Dense(2)], loss="mse", optimizer=fb.Adam(lr=0.01), seed=0)
history = model.fit(X, y, epochs=3, batch_size=32, verbose=0)
print(json.dumps({
    "file": fb.__file__,
    "uid": os.getuid(),
    "loss": history.history["loss"],
    "pred": model.predict(X[:10]).tolist(),
}))
"""

#: After the cache_dir child's warm-up: every call a user makes, on the same cache; prints
#: the kernels that had to be compiled (cache misses) anyway.
WARM_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numba
import numpy as np
import fastbp as fb
import fastbp.kernels as kernels
from fastbp import model as fbmodel
rng = np.random.default_rng(1)
X = rng.standard_normal((300, 20)).astype(np.float32)
y = rng.integers(0, 3, 300)
model = fb.Sequential([fb.Dense(300, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
fb.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
splits = []
for batch in (8, 256):  # the column split at 8 rows on 2 threads, the row split at 256
    model.fit(X, y, epochs=1, batch_size=batch, validation_data=(X, y), verbose=0)
    splits.append(model._workspace["cols"])
model.predict(X)
model.evaluate(X, y)
model.loss_and_gradients(X, y)
compiled = []
import importlib, pkgutil
for info in pkgutil.iter_modules(kernels.__path__):
    mod = importlib.import_module("fastbp.kernels." + info.name)
    for attr, obj in vars(mod).items():
        stats = getattr(obj, "stats", None)
        if getattr(obj, "__module__", None) == mod.__name__ and stats is not None and sum(stats.cache_misses.values()):
            compiled.append(mod.__name__ + "." + attr)
from fastbp.kernels import launch
compiled += [name for name, callback in launch.CALLBACKS.items() if callback.cache_hits == 0]
print(json.dumps({"compiled": compiled, "splits": splits, "threads": numba.config.NUMBA_NUM_THREADS}))
"""


def _expected() -> tuple[list[float], np.ndarray]:
    """The same run in this process (the same code, so the same numbers)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5)).astype(np.float32)
    y = np.stack([X[:, 0] - X[:, 1], np.tanh(X[:, 2])], axis=1)
    model = fb.Sequential([fb.Dense(8, activation="tanh"), fb.Dense(2)], loss="mse", optimizer=fb.Adam(lr=0.01),
                          seed=0)
    history = model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    return history.history["loss"], model.predict(X[:10])


def _unprivileged() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _make_writable(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


class ReadOnlyInstall:
    """A ``__pycache__``-less, read-only copy of fastbp and how to run Python against it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="fastbp-ro-"))
        os.chmod(self.base, 0o755)  # traversable by the unprivileged user
        self.site = self.base / "site"
        shutil.copytree(PACKAGE, self.site / "fastbp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                    "*.nbi", "*.nbc"))
        (self.base / "child.py").write_text(CHILD)
        (self.base / "warm_child.py").write_text(WARM_CHILD)
        self.user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            self.user = _unprivileged()
        for dirpath, _, filenames in os.walk(self.site):
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o444)
        for dirpath, _, _ in sorted(os.walk(self.site), reverse=True):
            os.chmod(dirpath, 0o555)
        self.before = _files(self.site)

    def env(self, cache_dir: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE_DIR", "PYTHON"))}
        nowhere = str(self.site / "no-home")  # inside the read-only tree: cannot be created
        env.update(HOME=nowhere, XDG_CACHE_HOME=nowhere, PYTHONDONTWRITEBYTECODE="1")
        if cache_dir is not None:
            env["NUMBA_CACHE_DIR"] = str(cache_dir)
        return env

    def command(self, args: list[str]) -> tuple[list[str], dict]:
        """``args`` run as the unprivileged user when we are root (setpriv, else subprocess's user=)."""
        if self.user is None:
            return args, {}
        uid, gid = self.user
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *args], {}
        return args, {"user": uid, "group": gid, "extra_groups": []}

    def start(self, cache_dir: Path | None, script: str = "child.py") -> subprocess.Popen:
        cmd, kwargs = self.command([sys.executable, "-B", str(self.base / script), str(self.site)])
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(cache_dir), cwd=self.base,
            **kwargs,
        )  # fmt: skip

    def really_read_only(self) -> str | None:
        """None if the child's user cannot write into the copy, else why the test can't be honest."""
        probe = "import sys; open(sys.argv[1] + '/fastbp/probe', 'w')"
        if os.geteuid() == 0 and self.user is None:
            return "running as root and there is no 'nobody' user to drop to"
        try:
            cmd, kwargs = self.command([sys.executable, "-c", "import numpy, numba"])
            ok = subprocess.run(cmd, capture_output=True, cwd=self.base, **kwargs)
        except OSError as exc:
            return f"the interpreter cannot be started as uid {self.user}: {exc}"
        if ok.returncode != 0:
            return f"the interpreter cannot run as uid {self.user}: {ok.stderr.decode()[-300:]}"
        cmd, kwargs = self.command([sys.executable, "-c", probe, str(self.site)])
        wrote = subprocess.run(cmd, capture_output=True, cwd=self.base, **kwargs)
        if wrote.returncode == 0:
            return "the copy is writable despite chmod -R a-w (a file system without permissions?)"
        return None

    def cleanup(self) -> None:
        _make_writable(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def runs():
    """Both children at once (each compiles every kernel from scratch); results by case name."""
    install = ReadOnlyInstall()
    try:
        reason = install.really_read_only()
        if reason is not None:
            pytest.skip(f"cannot make an honestly read-only install: {reason}")
        cache = install.base / "numba-cache"
        cache.mkdir()
        if install.user is not None:
            os.chown(cache, *install.user)
        procs = {"cache_dir": install.start(cache), "no_cache": install.start(None)}
        results = {}
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                err = f"timed out after {TIMEOUT} s\n{err}"
            results[name] = {"returncode": proc.returncode, "stdout": out, "stderr": err}
        warm = install.start(cache, "warm_child.py")
        out, err = warm.communicate(timeout=TIMEOUT)
        results["warm"] = {"returncode": warm.returncode, "stdout": out, "stderr": err}
        results["written"] = _files(install.site) - install.before
        results["cache_files"] = sorted(p.name for p in cache.rglob("*.nbi"))
        results["site"] = str(install.site)
        results["uid"] = install.user[0] if install.user else os.getuid()
        yield results
    finally:
        install.cleanup()


def _check_child(result: dict, runs: dict) -> None:
    assert result["returncode"] == 0, result["stderr"][-3000:]
    out = json.loads(result["stdout"].strip().splitlines()[-1])
    assert out["file"].startswith(runs["site"])  # the read-only copy was imported, not the checkout
    assert out["uid"] == runs["uid"]
    loss, pred = _expected()
    np.testing.assert_allclose(out["loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(np.array(out["pred"], dtype=np.float32), pred, rtol=1e-6, atol=1e-7)


def test_read_only_install_with_numba_cache_dir(runs):
    _check_child(runs["cache_dir"], runs)
    assert runs["cache_files"], "NUMBA_CACHE_DIR was given but no kernel was cached there"


def test_read_only_install_without_any_writable_cache(runs):
    _check_child(runs["no_cache"], runs)


def test_warmup_leaves_nothing_to_compile(runs):
    """fb.warmup() in the first child cached every kernel the calls of a later process need."""
    warm = runs["warm"]
    assert warm["returncode"] == 0, warm["stderr"][-3000:]
    out = json.loads(warm["stdout"].strip().splitlines()[-1])
    if out["threads"] >= 2:
        assert out["splits"] == [True, False]  # both splits ran
    assert out["compiled"] == []


def test_nothing_written_into_the_read_only_package(runs):
    assert runs["written"] == set()


def test_copy_is_really_read_only_for_the_child():
    """The premise: the user the children run as cannot write into the copy."""
    install = ReadOnlyInstall()
    try:
        reason = install.really_read_only()
        if reason is not None:
            pytest.skip(reason)
        mode = stat.S_IMODE(os.stat(install.site / "fastbp").st_mode)
        assert mode & 0o222 == 0
    finally:
        install.cleanup()
