"""fastbp follows the ecosystem's thread conventions: threadpoolctl's limits, OMP_NUM_THREADS
and joblib/loky workers reach its thread count, so nested parallelism does not
oversubscribe the cores; ``fb.set_num_threads`` stays the explicit control."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp as fb
import fastbp._adaptive as adaptive
import fastbp._config as fb_config
import fastbp._threads as fb_threads
from fastbp._adaptive import ThreadChooser

POOL = numba.config.NUMBA_NUM_THREADS


def _fit_threads() -> int:
    """Train a tiny model; the thread count its training step ran with."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    model = fb.Sequential([fb.Dense(8, activation="relu"), fb.Dense(2)], loss="cross_entropy", seed=0)
    model.fit(X, (X[:, 0] > 0).astype(int), epochs=1, batch_size=64)
    return model._workspace["threads"]


def test_threadpool_info_lists_fastbp(restore_threads):
    pools = [p for p in threadpool_info() if p["user_api"] == "fastbp"]
    assert len(pools) == 1
    assert pools[0]["num_threads"] == fb.get_num_threads()
    assert pools[0]["version"] == fb.__version__
    assert pools[0]["pool_size"] == POOL


def test_threadpool_limits_reach_fastbp(restore_threads):
    fb.set_num_threads(POOL)
    with threadpool_limits(1):
        assert fb.get_num_threads() == 1
        assert _fit_threads() == 1
    assert fb.get_num_threads() == POOL
    with threadpool_limits(limits=1, user_api="fastbp"):
        assert fb.get_num_threads() == 1
    with threadpool_limits(limits={"fastbp": 1}):
        assert fb.get_num_threads() == 1
    assert fb.get_num_threads() == POOL
    with threadpool_limits(limits=10_000):  # more than the pool: clamped, not an error
        assert fb.get_num_threads() == POOL


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("1,1", 1), (" 1 ", 1), ("0", POOL), ("many", POOL)])
def test_omp_num_threads_caps_the_default(value, expected):
    env = dict(os.environ, OMP_NUM_THREADS=value)
    out = subprocess.run([sys.executable, "-c", "import fastbp; print(fastbp.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert int(out.stdout) == expected


def _worker_threads(_: int) -> tuple[int, int]:
    import numba as nb

    import fastbp

    return fastbp.get_num_threads(), nb.config.NUMBA_NUM_THREADS


def test_loky_workers_share_the_cores():
    """joblib gives each loky worker cpu_count // n_jobs threads (it sets NUMBA_NUM_THREADS
    and OMP_NUM_THREADS in the workers), or ``inner_max_num_threads``: fastbp takes that."""
    joblib = pytest.importorskip("joblib")
    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        got = joblib.Parallel(n_jobs=2)(joblib.delayed(_worker_threads)(i) for i in range(4))
    assert set(got) == {(1, 1)}
    expected = max(1, joblib.cpu_count() // 2)
    got = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(_worker_threads)(i) for i in range(4))
    assert {threads for threads, _ in got} == {expected}


# ---------------------------------------------------------------------- adaptive thread count
def test_chooser_moves_to_the_faster_count_and_back():
    c = ThreadChooser(4)
    assert c.candidates == [4, 2, 1]
    rates = {4: 100.0, 2: 300.0, 1: 150.0}  # batches/s: cores busy, 2 threads best

    def run(n_segments):
        used = []
        for _ in range(n_segments):
            threads, batches = c.choose(40)
            used.append(threads)
            c.record(threads, batches, batches / rates[threads])
        return used

    used = run(60)
    assert c.current == 2 and used[-10:].count(2) >= 9  # settles on the fastest, probes rarely
    assert 1 in used and 4 in used  # after looking at every neighbour
    rates.update({4: 600.0})  # the other programs stopped
    run(3 * adaptive.PROBE_EVERY_MAX)
    assert c.current == 4


def test_chooser_probes_short_and_backs_off():
    c = ThreadChooser(2)
    probes = []
    for _ in range(200):
        threads, batches = c.choose(40)
        if threads == 1:
            probes.append(batches)
        c.record(threads, batches, batches / (100.0 if threads == 2 else 60.0))
    assert c.current == 2
    # 40 / 32: every probe is a short look, topped up until they add up to MIN_SECONDS
    # (one batch at 60/s is 17 ms, two are enough)
    assert probes == [1, 1] * (len(probes) // 2)
    assert len(probes) < 2 * 200 / adaptive.PROBE_EVERY  # fewer and fewer probes once confirmed


def test_chooser_judges_a_count_on_enough_time():
    """Short first segments (an epoch starts with one-batch segments) add up to
    MIN_SECONDS before a count is judged, so the first two-thread batch, slowed by waking
    the pool, does not send a fit to one thread."""
    c = ThreadChooser(2)
    used = []
    for i in range(100):  # the look at one thread is topped up once PROBE_BUDGET allows
        threads, batches = c.choose(4)
        seconds = batches / (1000.0 if threads == 2 else 600.0) + (0.004 if i == 0 else 0.0)
        c.record(threads, batches, seconds)
        used.append(threads)
    assert c.current == 2 and c.rate[1] == pytest.approx(600.0)
    assert used[-5:] == [2] * 5


def test_chooser_judges_a_far_slower_probe_at_once():
    """A probe far slower than the current count (DECISIVE times, over DECISIVE_SECONDS) is
    judged on its first segment: on a busy core one two-thread batch of a small net took
    56x one thread's time, and topping it up to MIN_SECONDS cost more than an epoch. A
    probe only a few times slower, or too short to tell, still adds up to MIN_SECONDS."""
    assert adaptive.DECISIVE_SECONDS < adaptive.MIN_SECONDS

    def on_one_thread(rate: float = 15000.0) -> ThreadChooser:
        c = ThreadChooser(2)
        c.current = 1
        c.rate[1] = rate
        c._probe_next = True
        return c

    c = on_one_thread()
    assert c.choose(3000)[0] == 2
    c.record(2, 1, 0.0037)  # 270 batches/s against 15000
    assert c.rate[2] == pytest.approx(1 / 0.0037) and not c._pending and c.current == 1
    assert c.choose(3000) == (1, 3000)  # no top-up of the probe: back to work
    c = on_one_thread(600.0)
    c.choose(40)
    c.record(2, 1, 0.005)  # 200/s against 600: a pool waking up, maybe; look on
    assert 2 not in c.rate and c._pending == {2: (1, 0.005)}
    assert c.choose(40) == (1, 40)  # once the top-up's expected loss fits PROBE_BUDGET
    c.record(1, 40, 40 / 600.0)
    ran = 40 / 600.0
    for _ in range(40):
        threads, batches = c.choose(40)
        if threads == 2:
            break
        c.record(1, 40, 40 / 600.0)
        ran += 40 / 600.0
    assert threads == 2 and ran * adaptive.PROBE_BUDGET >= batches * (1 / 200 - 1 / 600)
    c = on_one_thread()
    c.choose(3000)
    c.record(2, 1, 0.001)  # 15x slower, but 1 ms: too short to tell
    assert 2 not in c.rate and 2 in c._pending


def test_chooser_keeps_costly_probes_within_budget():
    """Probes of a count measured far slower lose at most PROBE_BUDGET of the time run,
    even when the current count's own segments are uneven enough (a busy machine) to ask
    for a look around after every one of them."""
    c = ThreadChooser(2)
    c.current, c.rate[1], c.rate[2] = 1, 15000.0, 135.0  # one two-thread batch: 7.4 ms
    lost = ran = 0.0
    for i in range(400):
        threads, batches = c.choose(300)
        rate = 135.0 if threads == 2 else (15000.0 if i % 2 else 6000.0)  # each slow one a DROP
        seconds = batches / rate
        c.record(threads, batches, seconds)
        if threads == 2:
            lost += seconds - batches / 15000.0
        ran += seconds
    assert c.current == 1 and 0 < lost <= adaptive.PROBE_BUDGET * ran
    # the two-thread rate stays known and the probes go on, so a freed core is found
    assert c.rate[2] == pytest.approx(135.0)


def test_chooser_needs_a_wider_margin_to_drop_threads():
    """Fewer threads must beat the current count by MARGIN_DOWN, more by MARGIN."""
    assert adaptive.MARGIN_DOWN > 1.1 > adaptive.MARGIN

    def settle(rates):
        c = ThreadChooser(2)
        for _ in range(10):
            threads, batches = c.choose(40)
            c.record(threads, batches, batches / rates[threads])
        assert set(c.rate) == {1, 2}
        return c.current

    assert settle({2: 100.0, 1: 110.0}) == 2  # one thread 1.1x faster: stay on 2
    assert settle({2: 100.0, 1: 130.0}) == 1
    c = ThreadChooser(2)
    c.current = 1  # on one thread, two at 1.1x: move up
    for _ in range(10):
        threads, batches = c.choose(40)
        c.record(threads, batches, batches / {2: 110.0, 1: 100.0}[threads])
    assert c.current == 2


def test_chooser_drops_threads_by_the_narrow_margin_when_other_processes_hold_the_cores():
    """Beside a busy core (by the load counters) one thread 1.1x faster than two is enough
    to move down: MARGIN, not MARGIN_DOWN, which guards only the doubt of an unexplained
    slow moment. Without a load reading the wide margin stays."""

    def settle(load):
        c = ThreadChooser(2, load)
        for _ in range(10):
            threads, batches = c.choose(40)
            c.record(threads, batches, batches / {2: 100.0, 1: 110.0}[threads])
        assert set(c.rate) == {1, 2}
        return c.current

    assert settle(_FakeLoad(cores=2, busy=1.0)) == 1
    assert settle(_FakeLoad(cores=2, busy=0.0)) == 2
    assert settle(None) == 2


def test_chooser_probes_fewer_threads_often_while_other_processes_hold_the_cores():
    """On two threads beside a busy core, with one thread measured slower once (an unlucky
    look), the next look at one thread comes at the next segment, not after the doubling
    wait; with the cores free it waits as before."""

    def first_down_probe(busy):
        c = ThreadChooser(2, _FakeLoad(cores=2, busy=busy))
        c.rate[1], c.rate[2] = 50.0, 100.0  # one thread looked slow
        c._interval = adaptive.PROBE_EVERY_MAX
        for seg in range(1, 3 * adaptive.PROBE_EVERY_MAX):
            threads, batches = c.choose(100)
            if threads == 1:
                return seg
            c.record(threads, batches, batches / 100.0)
        return None

    assert first_down_probe(1.0) <= adaptive.CROWDED_PROBE_EVERY + 2  # (+1: the probe budget needs a segment run)
    assert first_down_probe(0.0) > adaptive.PROBE_EVERY_MAX


def test_chooser_returns_soon_after_a_slow_moment():
    """A slow moment of two threads sends the fit to one; once two threads are fast again it
    is back on them within PROBE_AFTER_DOWN segments, not PROBE_EVERY or more. Under
    lasting load the probes of two threads come soon after the move, then back off."""
    c = ThreadChooser(2)
    rates = {2: 1500.0, 1: 900.0}

    starts: list[int] = []  # segments that began a probe (not the top-up of a look)

    def run(n):
        used = []
        for _ in range(n):
            waiting = set(c._pending)
            threads, batches = c.choose(300)
            if threads != c.current and threads not in waiting:
                starts.append(len(used))
            c.record(threads, batches, batches / rates[threads])
            used.append(threads)
        return used

    run(40)
    assert c.current == 2
    rates[2] = 500.0  # a slow moment: a neighbour on one of the two cores
    for _ in range(12):
        run(1)
        if c.current == 1:
            break
    assert c.current == 1
    rates[2] = 1500.0  # and over at once
    used = run(adaptive.PROBE_AFTER_DOWN + 3)
    assert c.current == 2 and used[-2:] == [2, 2]
    rates[2] = 500.0  # lasting load: the probes back off again
    starts.clear()
    used = run(300)
    assert c.current == 1
    moved = used.index(1)  # the first segment after the move down (it is on one thread)
    probes = [i for i in starts if used[i] == 2]
    gaps = np.diff(probes)
    assert probes[0] - moved <= adaptive.PROBE_AFTER_DOWN and gaps[-1] > adaptive.PROBE_EVERY and len(gaps) < 12
    assert adaptive.PROBE_AFTER_DOWN < adaptive.PROBE_EVERY


def test_chooser_with_one_thread_never_probes():
    c = ThreadChooser(1)
    assert all(c.choose(7) == (1, 7) for _ in range(20))


@pytest.mark.skipif(POOL < 2, reason="needs 2 Numba threads")
def test_weights_do_not_depend_on_the_threads_that_ran(restore_threads, monkeypatch):
    """With ``RUN_BLOCKS`` off (the default), an adaptive fit with the chooser forced to alternate 2 and
    1 running threads every segment: bit for bit the weights of a fixed 2-thread fit, row
    and column split."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((600, 300)).astype(np.float32)
    y = rng.integers(0, 4, 600)
    monkeypatch.setattr(fb_config, "RUN_BLOCKS", False)
    monkeypatch.setattr(fb_config, "SEGMENT_SECONDS", 1e-9)  # one batch a segment
    for batch, widths in ((40, (300, 64)), (100, (48, 24))):  # column split, row split
        results = {}
        for mode in ("fixed", "alternating"):
            if mode == "fixed":
                fb.set_num_threads(2)
            else:
                fb.set_num_threads(2, adaptive=True)
                seen = []

                def choose(self, batches, seen=seen):
                    seen.append(len(seen) % 2 + 1)
                    return seen[-1], batches

                monkeypatch.setattr(ThreadChooser, "choose", choose)
            layers = [fb.Dense(w, activation="relu") for w in widths] + [fb.Dense(4)]
            model = fb.Sequential(layers, loss="cross_entropy", optimizer=fb.Adam(1e-3), seed=5)
            h = model.fit(X, y, epochs=2, batch_size=batch, verbose=0)
            results[mode] = (model.get_weights(), h.history["loss"], model._workspace["cols"])
        assert len(seen) > 10 and set(seen) == {1, 2}
        assert results["fixed"][2] == results["alternating"][2] == (batch == 40)
        assert results["fixed"][1] == results["alternating"][1]
        for a, b in zip(results["fixed"][0], results["alternating"][0]):
            np.testing.assert_array_equal(a, b)
        monkeypatch.undo()
        monkeypatch.setattr(fb_config, "RUN_BLOCKS", False)
        monkeypatch.setattr(fb_config, "SEGMENT_SECONDS", 1e-9)


def _forced_fit(monkeypatch, X, y, widths, batch, runs, optimizer, epochs=2):  # noqa: ANN001, ANN202
    """An adaptive 2-thread fit whose chooser runs ``runs(i)`` threads in segment ``i`` (one
    batch a segment); returns the model and the counts that ran."""
    seen: list[int] = []

    def choose(self, batches):  # noqa: ANN001, ANN202
        seen.append(runs(len(seen)))
        return seen[-1], batches

    with monkeypatch.context() as m:
        m.setattr(fb_config, "SEGMENT_SECONDS", 1e-9)
        m.setattr(ThreadChooser, "choose", choose)
        fb.set_num_threads(2, adaptive=True)
        layers = [fb.Dense(w, activation="relu") for w in widths] + [fb.Dense(4)]
        model = fb.Sequential(layers, loss="cross_entropy", optimizer=optimizer, seed=5)
        model.fit(X, y, epochs=epochs, batch_size=batch, verbose=0)
    return model, seen


@pytest.mark.skipif(POOL < 2, reason="needs 2 Numba threads")
def test_fewer_running_threads_take_their_own_blocks(restore_threads, monkeypatch):
    """With ``RUN_BLOCKS`` on, a segment on one thread runs one thread's blocks. Forced
    to one thread throughout, the row split gives bit for bit the weights of a fixed
    ``set_num_threads(1)`` fit; alternating 1 and 2, both splits train the model of a fixed
    2-thread fit to rounding. Tolerance: float32 SGD with momentum over 30 steps, the row
    blocks' partial gradients summed in another grouping every other step, differed by at
    most 6e-8 (measured, weights up to 0.46; the column split's blocks came out identical);
    one of two row blocks' gradient left out of a single step moves the largest weights by
    1e-3 to 5e-3 (the learning rate times half a batch's gradient, measured)."""
    monkeypatch.setattr(fb_config, "RUN_BLOCKS", True)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((600, 300)).astype(np.float32)
    y = rng.integers(0, 4, 600)
    sgd = fb.SGD(0.05, momentum=0.9)
    one, seen = _forced_fit(monkeypatch, X, y, (48, 24), 100, lambda i: 1, fb.Adam(1e-3))
    assert set(seen) == {1} and one._workspace["runs"][1]["threads"] == 1
    fb.set_num_threads(1)
    fixed1 = fb.Sequential([fb.Dense(48, activation="relu"), fb.Dense(24, activation="relu"), fb.Dense(4)],
                           loss="cross_entropy", optimizer=fb.Adam(1e-3), seed=5)  # fmt: skip
    fixed1.fit(X, y, epochs=2, batch_size=100, verbose=0)
    for a, b in zip(one.get_weights(), fixed1.get_weights()):
        np.testing.assert_array_equal(a, b)
    for batch, widths in ((40, (300, 64)), (100, (48, 24))):  # column split, row split
        alt, seen = _forced_fit(monkeypatch, X, y, widths, batch, lambda i: i % 2 + 1, sgd)
        assert set(seen) == {1, 2} and alt._workspace["cols"] == (batch == 40)
        fb.set_num_threads(2)
        layers = [fb.Dense(w, activation="relu") for w in widths] + [fb.Dense(4)]
        fixed = fb.Sequential(layers, loss="cross_entropy", optimizer=sgd, seed=5)
        fixed.fit(X, y, epochs=2, batch_size=batch, verbose=0)
        for a, b in zip(alt.get_weights(), fixed.get_weights()):
            np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)


def test_block_rows_follow_the_work_of_a_row():
    """The default rule (``_config.MIN_BLOCK_FLOP``; the suite runs with it at 0, conftest.py):
    64-128-64-10 costs 6 * 17,024 - 2 * 8,192 = 85,760 operations a row, so a block needs
    35 rows; a wide network keeps the floor of 16 rows."""
    from fastbp import _plan

    sizes = np.array([64, 128, 64, 10])
    assert _plan.train_flops(sizes) == 85_760
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fb_config, "MIN_BLOCK_FLOP", fb_config.DEFAULT_MIN_BLOCK_FLOP)
        assert _plan.block_rows(sizes) == 35
        assert _plan.block_rows(np.array([784, 512, 256, 10])) == fb_config.MIN_ROWS_PER_BLOCK
    assert _plan.block_rows(sizes) == fb_config.MIN_ROWS_PER_BLOCK  # the suite's setting


@pytest.mark.skipif(POOL < 2, reason="needs 2 Numba threads")
def test_a_small_batch_stays_one_block_on_any_thread_count(restore_threads, monkeypatch):
    """With the default rule, 64-128-64-10 at batch 64 (two blocks would have 32 rows, fewer
    than 35) trains in one block whatever the thread count: bit for bit the weights of one
    thread, on 2 threads and adaptive (which then has no count to choose: the chooser is
    never asked). At batch 128 (two blocks of 64 rows) it still splits in two."""
    monkeypatch.setattr(fb_config, "MIN_BLOCK_FLOP", fb_config.DEFAULT_MIN_BLOCK_FLOP)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((640, 64)).astype(np.float32)
    y = rng.integers(0, 10, 640)
    asked = []
    monkeypatch.setattr(ThreadChooser, "choose", lambda self, batches: asked.append(batches) or (1, batches))

    def fit(threads, batch, adaptive=False):  # noqa: ANN001, ANN202
        fb.set_num_threads(threads, adaptive=adaptive)
        layers = [fb.Dense(128, activation="relu"), fb.Dense(64, activation="relu"), fb.Dense(10)]
        model = fb.Sequential(layers, loss="cross_entropy", optimizer=fb.SGD(0.05, momentum=0.9), seed=2)
        model.fit(X, y, epochs=2, batch_size=batch, verbose=0)
        return model

    runs = [fit(1, 64), fit(2, 64), fit(2, 64, adaptive=True)]
    assert [m._workspace["gpart"].shape[0] for m in runs] == [1, 1, 1]
    assert not asked
    for model in runs[1:]:
        for a, b in zip(runs[0].get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert fit(2, 128)._workspace["gpart"].shape[0] == 2


def test_explicit_thread_count_turns_adaptation_off(restore_threads):
    saved = fb_threads.adaptive()
    try:
        fb.set_num_threads(1)
        assert not fb_threads.adaptive()
        fb.set_num_threads(1, adaptive=True)
        assert fb_threads.adaptive()
        with fb_threads.thread_setting(1):
            assert not fb_threads.adaptive() and fb.get_num_threads() == 1
        assert fb_threads.adaptive()
        with threadpool_limits(1):  # a limit caps the count, and keeps the mode
            assert fb_threads.adaptive()
        with pytest.raises(TypeError, match="adaptive must be a bool"):
            fb.set_num_threads(1, adaptive="yes")
        assert fb_threads.adaptive()
    finally:
        fb_threads._adaptive = saved


def test_adaptive_is_the_default():
    out = subprocess.run([sys.executable, "-c", "import fastbp._threads as t; print(t.adaptive())"],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    assert out.stdout.strip() == "True"


class _FakeLoad:
    """A :class:`fastbp._adaptive.CoreLoad` stand-in: ``busy`` cores held by others."""

    def __init__(self, cores: int, busy: float) -> None:
        self.cores, self.busy = cores, busy

    def others(self) -> float:
        return self.busy


def test_chooser_holds_up_probes_while_other_processes_hold_the_cores():
    """On one thread beside a busy core no two-thread probe runs, however long; once the
    core is free the next segment probes, and finds two threads faster. Down-probes do
    not wait for the load (fewer threads need no free core)."""
    load = _FakeLoad(cores=2, busy=1.0)
    c = ThreadChooser(2, load)
    c.current, c.rate[1], c.rate[2] = 1, 1000.0, 100.0
    for _ in range(4 * adaptive.PROBE_EVERY_MAX):
        threads, batches = c.choose(100)
        assert threads == 1
        c.record(threads, batches, batches / (1000.0 if _ % 2 else 600.0))  # uneven: DROPs ask for probes
    load.busy = 0.3  # a core free, less what a browser takes
    threads, batches = c.choose(100)
    assert threads == 2
    for _ in range(4):  # the look, topped up to MIN_SECONDS
        c.record(threads, batches, batches / (2000.0 if threads == 2 else 1000.0))
        threads, batches = c.choose(100)
    assert c.current == 2
    c2 = ThreadChooser(2, _FakeLoad(cores=2, busy=2.0))  # on two threads, everything busy
    c2.rate[2] = 100.0
    assert any(c2.choose(100)[0] == 1 for _ in range(2 * adaptive.PROBE_EVERY))


def test_core_load_counts_other_processes_not_this_one(tmp_path):
    """``others`` is the busy CPU time of /proc/stat (all but idle and iowait, steal
    included) less this process's own, per second of the window; windows shorter than
    LOAD_WINDOW stay open."""
    stat = tmp_path / "stat"
    clock, own = [100.0], [5.0]
    tick = os.sysconf("SC_CLK_TCK")

    def write(user, idle, steal):  # user nice system idle iowait irq softirq steal
        stat.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")

    write(0, 0, 0)
    load = adaptive.CoreLoad(str(stat), clock=lambda: clock[0], own=lambda: own[0])
    clock[0] += adaptive.LOAD_WINDOW / 2
    assert load.others() is None
    # one second: 1.5 cores busy (1.2 user + 0.3 steal), of which this process 0.5
    clock[0] += 1.0 - adaptive.LOAD_WINDOW / 2
    own[0] += 0.5
    write(int(1.2 * tick), int(0.5 * tick), int(0.3 * tick))
    assert load.others() == pytest.approx(1.0)
    clock[0] += 1.0
    own[0] += 1.0  # this process alone was busy
    write(int(2.2 * tick), int(1.5 * tick), int(0.3 * tick))
    assert load.others() == pytest.approx(0.0)
    stat.write_text("intr 0\n")
    with pytest.raises(ValueError):
        adaptive.CoreLoad(str(stat))


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_core_load_sees_a_spinning_process():
    """On this machine's real counters, a child spinning for 0.5 s shows as about a core
    held by others (at least half of one: the child may start late)."""
    load = adaptive.CoreLoad.for_machine()
    assert load is not None
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 0.6: pass"])
    try:
        import time

        time.sleep(0.1)
        load.others()  # open the window once the child runs
        time.sleep(0.4)
        held = load.others()
    finally:
        child.wait()
    assert held is not None and held >= 0.5


def test_chooser_tops_up_a_look_at_fewer_threads_at_once_while_the_cores_are_held():
    """Beside a busy core (by the load counters) a one-batch look at one thread that came
    out slower than two threads' rate is topped up at the next segment; with the cores
    free it waits for PROBE_BUDGET as before (a look that slow is likely one)."""

    def top_up_after(busy: float) -> int | None:
        c = ThreadChooser(2, _FakeLoad(cores=2, busy=busy))
        c.rate[2] = 3000.0
        c._probe_next = True
        assert c.choose(80) == (1, 2)  # the look: 80 / 32 batches
        c.record(1, 2, 2 / 2500.0)  # 2500/s against 3000: too short to judge
        assert c._pending
        for seg in range(1, 40):
            threads, batches = c.choose(80)
            if threads == 1:
                return seg
            c.record(2, batches, batches / 3000.0)
        return None

    assert top_up_after(1.0) == 1
    assert top_up_after(0.0) > 1
