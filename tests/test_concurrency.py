"""fastbp under concurrency: Python threads sharing a model, models trained side by side,
thread-count changes from another thread, and models used in child processes.

Threads: fastbp's kernels release the GIL (``nogil``) and use Numba's ``omp`` threading
layer, which is safe to enter from several Python threads at once; ``predict`` allocates
its buffers per call. Processes: every fork test runs in a fresh interpreter
(``subprocess`` with a timeout) so that neither this pytest process's thread pools nor a
hang can leak into the test run.

Fork, measured: with Numba's ``omp`` layer on GNU OpenMP (libgomp, the layer picked on
Linux when TBB is not installed), a child forked *after* the parent ran a parallel kernel
is killed by SIGTERM the moment it runs one itself; Numba prints "Terminating: fork()
called from a process already using GNU OpenMP, this is unsafe." A child that does not call
fastbp, or a fork made before the first parallel kernel, works; so does the "spawn"
start method (and "forkserver"). fastbp therefore marks such a child (``os.register_at_fork``)
and runs it on one thread, where ``launch.run_blocks`` never enters the pool.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pytest
from helpers import net

import fastbp as fb

#: The folder holding the fastbp under test, so child interpreters import the same one.
FASTBP_PARENT = str(Path(fb.__file__).resolve().parents[1])
PROCESS_TIMEOUT = 180  # seconds for a whole child interpreter (kernels may compile in it)


def _model(seed: int = 0, loss: str = "cross_entropy", k: int = 3) -> fb.Sequential:
    return net((16, 8), ("relu", "gelu"), k, loss, optimizer=fb.Adam(lr=0.01), seed=seed)


def _data(n: int, seed: int = 0, d: int = 6, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def _run_threads(fn, args_list, n_threads):
    """Start all calls together (a barrier) so they really overlap."""
    barrier = threading.Barrier(n_threads)

    def wrapped(args):
        barrier.wait(timeout=60)
        return fn(*args)

    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(wrapped, args_list, timeout=300))


# ---------------------------------------------------------------- threads
def test_predict_from_8_threads_matches_serial_bitwise():
    X, y = _data(4000)
    model = _model()
    model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    sizes = [1, 2, 17, 255, 256, 257, 1000, 3001, 4000]  # around the 256-row predict chunk
    inputs = [X[:s] for s in sizes]
    serial = [model.predict(x) for x in inputs]
    weights = model.get_weights()

    def worker(t):
        out = []
        for r in range(12):
            i = (t * 5 + r * 7) % len(sizes)  # each thread its own order of sizes
            out.append((i, model.predict(inputs[i])))
        return out

    results = _run_threads(worker, [(t,) for t in range(8)], 8)
    checked = 0
    for per_thread in results:
        for i, got in per_thread:
            np.testing.assert_array_equal(got, serial[i])
            checked += 1
    assert checked == 8 * 12
    for a, b in zip(model.get_weights(), weights):  # predict never writes to the model
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_gradients_from_threads_match_serial():
    X, y = _data(1500)
    model = _model()
    model.fit(X, y, epochs=1, verbose=0)
    loss = model.evaluate(X, y)
    value, grads = model.loss_and_gradients(X[:300], y[:300])

    def worker():
        out = [(model.evaluate(X, y), model.loss_and_gradients(X[:300], y[:300])) for _ in range(5)]
        return out

    for per_thread in _run_threads(worker, [()] * 6, 6):
        for got_loss, (got_value, got_grads) in per_thread:
            assert got_loss == loss
            assert got_value == value
            for a, b in zip(got_grads, grads):
                np.testing.assert_array_equal(a, b)


def _train(seed: int, loss: str, epochs: int = 3):
    X, y = _data(600, seed=seed)
    if loss == "mse":
        y = np.stack([X[:, 0] * X[:, 1], np.sin(X[:, 2]), X[:, 3]], axis=1)
    model = _model(seed=seed, loss=loss)
    hist = model.fit(X, y, epochs=epochs, batch_size=32, verbose=0)
    return model.get_weights(), hist.history["loss"], model.predict(X[:50])


def test_two_models_trained_in_two_threads_match_serial():
    jobs = [(1, "cross_entropy"), (2, "mse")]
    serial = [_train(*job) for job in jobs]
    for _ in range(2):
        concurrent = _run_threads(_train, jobs, 2)
        for (w_c, l_c, p_c), (w_s, l_s, p_s) in zip(concurrent, serial):
            assert l_c == l_s
            for a, b in zip(w_c, w_s):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(p_c, p_s)


def test_many_models_one_data_set_in_threads_do_not_interfere():
    """Four threads train four models on the *same* X and y arrays (shared, read-only)."""
    X, y = _data(500)
    X.flags.writeable = False

    def train(seed):
        model = _model(seed=seed)
        model.fit(X, y, epochs=2, batch_size=50, verbose=0)
        return model.get_weights()

    serial = [train(s) for s in range(4)]
    for got, want in zip(_run_threads(train, [(s,) for s in range(4)], 4), serial):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_set_num_threads_in_one_thread_does_not_break_another():
    """fit reads the thread count once per epoch (and predict once per call), so with another
    thread toggling it, every one-epoch fit and every predict equals a serial run at one of
    the counts: never a crash, never a mixture inside one epoch."""
    limit = numba.config.NUMBA_NUM_THREADS
    counts = sorted({1, limit})
    X, y = _data(800)
    before_numba = numba.get_num_threads()
    previous = fb.get_num_threads()
    try:
        # the answer for each thread count: training is deterministic per count
        expected = {}
        for c in counts:
            fb.set_num_threads(c)
            expected[c] = _train(3, "cross_entropy", epochs=1)
        fb.set_num_threads(previous)
        pred_model = _model(seed=4)
        pred_model.fit(X, y, epochs=1, verbose=0)
        pred_expected = []
        for c in counts:
            fb.set_num_threads(c)
            pred_expected.append(pred_model.predict(X))
        stop = threading.Event()
        errors: list[BaseException] = []

        def toggler():
            i = 0
            try:
                while not stop.is_set():
                    fb.set_num_threads(counts[i % len(counts)])
                    i += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=toggler)
        t.start()
        try:
            trained = [_train(3, "cross_entropy", epochs=1) for _ in range(4)]
            preds = [pred_model.predict(X) for _ in range(10)]
        finally:
            stop.set()
            t.join(timeout=30)
        assert not errors and not t.is_alive()
        for w, losses, _ in trained:
            # each fit ran under one consistent thread count: its result is one of the serial ones
            assert any(
                losses == expected[c][1] and all(np.array_equal(a, b) for a, b in zip(w, expected[c][0]))
                for c in counts
            )
        for p in preds:
            assert any(np.array_equal(p, e) for e in pred_expected)
    finally:
        fb.set_num_threads(previous)
    assert numba.get_num_threads() == before_numba  # the calling thread's Numba setting is restored


def test_thread_count_is_restored_per_thread_after_an_error():
    """A rejected call inside a thread must not leave that thread's Numba setting changed."""
    model = _model()
    X, y = _data(100)
    model.fit(X, y, epochs=1, verbose=0)

    def worker():
        before = numba.get_num_threads()
        with pytest.raises(ValueError):
            model.predict(np.full((3, 6), np.nan))
        model.predict(X)
        return before, numba.get_num_threads()

    for before, after in _run_threads(worker, [()] * 4, 4):
        assert before == after


# ---------------------------------------------------------------- processes
CHILD_SCRIPT = textwrap.dedent(
    r"""
    import hashlib, json, multiprocessing as mp, sys
    import numpy as np
    import fastbp as fb

    def work(q=None):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((3000, 6)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
        model = fb.Sequential([fb.Dense(16, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
        model.fit(X, y, epochs=2, batch_size=64, verbose=0)
        h = hashlib.sha256()
        for w in model.get_weights():
            h.update(w.tobytes())
        h.update(model.predict(X).tobytes())
        digest = h.hexdigest()
        if q is not None:
            q.put(digest)
        return digest

    def idle(q):
        q.put("idle-ok")

    if __name__ == "__main__":
        method, parent_first, target = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
        parent = work() if parent_first else None
        one = None
        if parent_first:  # the same work on one thread, which is what a forked child runs
            n = fb.get_num_threads()
            fb.set_num_threads(1)
            one = work()
            fb.set_num_threads(n)
        ctx = mp.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=work if target == "work" else idle, args=(q,))
        p.start()
        p.join(120)
        hung = p.is_alive()
        if hung:
            p.kill()
            p.join()
        try:
            child = q.get(timeout=5)
        except Exception:
            child = None
        if parent is None:
            parent = work()
        print(json.dumps({"exitcode": p.exitcode, "hung": hung, "child": child, "parent": parent, "one": one}))
    """
)


def _spawn_script(tmp_path, method: str, parent_first: bool, target: str = "work") -> tuple[dict, str]:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"start method {method!r} not available on {sys.platform}")
    script = tmp_path / "child.py"
    script.write_text(CHILD_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FASTBP_PARENT, os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(
            [sys.executable, str(script), method, "1" if parent_first else "0", target],
            capture_output=True, text=True, timeout=PROCESS_TIMEOUT, cwd=tmp_path, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{method} child process test hung for {PROCESS_TIMEOUT} s: {exc.stderr!r}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _assert_child_matches_parent(result: dict, stderr: str) -> None:
    assert not result["hung"], stderr
    assert result["exitcode"] == 0, stderr
    assert result["child"] == result["parent"]  # bit-identical weights and predictions


def test_fork_before_any_parallel_kernel(tmp_path):
    """Forking a process that imported fastbp but has not run a kernel yet is safe."""
    result, stderr = _spawn_script(tmp_path, "fork", parent_first=False)
    _assert_child_matches_parent(result, stderr)


def test_fork_after_parallel_kernels_child_without_fastbp(tmp_path):
    """A forked child that does not call fastbp is unaffected by the parent's thread pool."""
    result, stderr = _spawn_script(tmp_path, "fork", parent_first=True, target="idle")
    assert not result["hung"] and result["exitcode"] == 0 and result["child"] == "idle-ok", stderr


def test_fork_after_parallel_kernels_trains_and_predicts_on_one_thread(tmp_path):
    """Numba's omp layer on GNU OpenMP would terminate (SIGTERM) a child forked after the
    parent ran a parallel kernel, as soon as the child runs one. fastbp detects such a
    child and runs it on one thread, outside the pool: it trains and predicts what the
    parent computes on one thread, bit for bit."""
    result, stderr = _spawn_script(tmp_path, "fork", parent_first=True)
    assert not result["hung"], stderr
    assert result["exitcode"] == 0, stderr
    assert "Terminating" not in stderr
    assert result["child"] == result["one"] and result["parent"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_after_parallel_kernels(tmp_path, method):
    result, stderr = _spawn_script(tmp_path, method, parent_first=True)
    _assert_child_matches_parent(result, stderr)


def test_pickled_model_used_in_spawned_process(tmp_path):
    """A trained model sent to a 'spawn' worker predicts exactly as in the parent."""
    X, y = _data(700)
    model = _model()
    model.fit(X, y, epochs=1, verbose=0)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        remote = pool.apply_async(_predict_remote, (model, X)).get(timeout=PROCESS_TIMEOUT)
    np.testing.assert_array_equal(remote, model.predict(X))


def _predict_remote(model: fb.Sequential, X: np.ndarray) -> np.ndarray:
    return model.predict(X)
