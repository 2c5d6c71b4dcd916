"""How many threads run each compiled segment of a ``fit`` epoch, chosen by measurement.

fastbp's parallel kernels split a batch into a fixed number of blocks, one per thread of
the thread count (:func:`fastbp.get_num_threads`), and end each parallel region at a
barrier. On a machine whose cores are busy with other work (a second process, a browser,
a neighbour on a shared VM), one of those threads is descheduled for a time slice at a
time and every barrier waits for it: measured on 2 cores with one taken by a spinning
process, 784-512-256-10 at batch 128 trained at 12.5k samples/s on 2 threads against 34k
on 1. Small networks may gain nothing from a second thread even on an idle machine.

So training measures instead of guessing. An epoch already runs as compiled segments of
about 0.2 s; :class:`ThreadChooser` times each one and picks, for the next, the fastest of
the candidate counts (the thread count, then halvings down to 1), re-trying the others in
short probe segments now and then, and at once when the current rate falls.

By default only the number of threads that *run* changes: the blocks the work is split
into, and the order their partial sums are added, stay those of the full thread count
whoever computes them, so the weights are bit for bit those of a fixed
``set_num_threads(n)`` run. With :data:`fastbp._config.RUN_BLOCKS` on, a segment on fewer
threads splits its batches into that many threads' blocks (``model._run_workspace``),
which one thread runs faster than blocks cut for two; the weights then follow the choices
to rounding only.
"""

from __future__ import annotations

import os
import time

#: Segments between probes of another thread count: at first, and at most after probes
#: that kept confirming the current count (each doubles the wait).
PROBE_EVERY: int = 8
PROBE_EVERY_MAX: int = 64
#: After a move to fewer threads the first probe comes this many segments later (then the
#: wait doubles on each confirming probe, as at any count). A slow moment sends a fit down
#: as surely as a busy core does: measured on 2 cores, 784-512-256-10 at batch 32, epochs
#: after a 0.3 s pause, the first two-thread segment ran at 534 batches/s against 893 on
#: one thread, and the fit then stayed on one thread for six epochs (850/s) that two
#: threads ran at 1500/s. Probing more often for as long as the load lasts costs: a probe
#: of two threads beside a busy core cost up to 0.1 s (8 batches at 58/s), so the waits
#: still grow to :data:`PROBE_EVERY_MAX`.
PROBE_AFTER_DOWN: int = 2
#: While the load counters show other processes on the cores the current count runs on,
#: fewer threads are probed after this many segments, whatever the last probes said (and
#: within :data:`PROBE_BUDGET`): on fastbp's pool two threads beside a busy core are
#: 0.8-1.0x of one, close enough that a look at one thread in an unlucky moment had kept
#: 16-64-64-64-64-1 on two threads for whole epochs (0.88x of a one-thread model over a
#: sweep's three epochs, measured on 2 cores); after 2 segments, 64-128-64-10 (an epoch a
#: segment) still ran its first three epochs on two threads, at 31-58 ms against 26 ms.
CROWDED_PROBE_EVERY: int = 0
#: A probe of another count starts with a look of FIRST_PROBE_FRACTION of a segment's
#: batches (at least one), scaled by that count's last known rate against the current
#: one's; a look too short to judge goes on to :data:`MIN_SECONDS` in all (unless it is
#: :data:`DECISIVE`). Under load a count can be 20x slower than its last rate says: the
#: rate of a quiet moment, measured on 2 cores with one then taken by a spinning process,
#: sized a probe of 784-512-256-10 at batch 128 (Adam) at 11 batches, which took 0.64 s
#: (58 ms a batch against 3.2 ms on one thread), more than an epoch. PROBE_FRACTION sizes
#: the first segment of the current count itself, when it has no rate yet.
PROBE_FRACTION: float = 0.25
FIRST_PROBE_FRACTION: float = 1 / 32
#: Switch to another count only when its measured rate beats the current one's by this;
#: to fewer threads only by :data:`MARGIN_DOWN`. On an idle but shared VM two threads and
#: one now and then run alike for seconds (the host giving both virtual CPUs one core's
#: worth); there more threads lose nothing, and they are already running when it ends.
#: Under real contention one thread is 2-3x faster (measured), far past either margin.
#: Where the load counters show other processes holding the cores the current count runs
#: on (:data:`FREE_SLACK`), there is no doubt left to guard against: fewer threads need
#: only beat it by MARGIN. Measured on 2 cores with one taken by a spinning process, on
#: fastbp's pool (``kernels/pool.py``), where two threads beside the busy core are no
#: longer 3x slower but 0.85-0.9x of one (784-512-256-10 at batch 128 36.9k samples/s
#: against 42.1k on one thread, 64-128-64-10 at batch 64 648k against 880k): the fit stayed
#: on two threads, inside MARGIN_DOWN.
MARGIN: float = 1.05
MARGIN_DOWN: float = 1.15
#: A count's rate is taken only from at least this much measured time: shorter segments of
#: it add up first. Probes of one batch (1-2 ms) decided a 784-512-256-10 fit at batch 32
#: for one thread from the first batches, whose two-thread batch woke the pool: it then
#: trained two epochs at 0.6x its two-thread speed before the next probe (measured).
MIN_SECONDS: float = 0.02
#: ... unless a probe of another count is already this many times slower than the current
#: count over at least :data:`DECISIVE_SECONDS`: that is no pool waking up (the slowest
#: first two-thread batch measured, 784-512-256-10 at batch 32, was 1-2 ms against 1.1 ms
#: on one thread), it is a busy core. Measured on 2 cores with one taken by a spinning
#: process, 64-128-64-10 at batch 64: one two-thread batch took 3.7 ms against 0.065 ms on
#: one thread (56x), and the MIN_SECONDS rule then ran 5 more (35 ms) before judging, more
#: than the whole 21 ms epoch of one thread; a probe of such a net now costs the one batch.
DECISIVE: float = 4.0
DECISIVE_SECONDS: float = 0.002
#: A probe of a count measured before, or the top-up of a look, waits until the current
#: count has run 1 / PROBE_BUDGET times the time the probe is expected to lose (its
#: batches at that count's last rate, or the look's, against the current one's). Under
#: load the probes of a small net dominate otherwise: measured on 2 cores with one busy, 64-128-64-10 at batch 64 trains
#: a 20 ms epoch on one thread, and one two-thread batch beside the busy core took 7.4 ms;
#: probing every few segments (epochs of one or two segments each) cost a third of the
#: time. With the budget such a probe comes every ~0.15 s of training, and the fit is back
#: on two threads that long after the load ends. On a quiet machine, 16-64-64-64-64-1 at
#: batch 256 trains an epoch of 20,000 rows in 12 ms on two threads, and topping up a look
#: at one thread to MIN_SECONDS at once ran 17 ms of it (an epoch of 19 ms).
#: The top-up of a look at *fewer* threads does not wait while the load counters show
#: other processes on the cores the current count runs on (:data:`FREE_SLACK`): a look of
#: one batch says little (beside a busy core, 16-64-64-64-64-1's first one-thread batch
#: took 0.39 ms against 0.29 ms a two-thread batch, so its top-up waited for 65 ms of
#: training, three of a sweep's 20 ms epochs, on two threads at 0.7x one's speed;
#: measured on 2 cores).
PROBE_BUDGET: float = 0.05
#: A segment slower than this fraction of the current count's rate triggers a probe.
DROP: float = 0.7
#: Weight of the newest segment in each count's rate (exponential moving average).
ALPHA: float = 0.5

#: An up-probe (a probe of more threads than run now) waits while other processes hold
#: the cores it would add: it runs only if the cores the machine has, less those other
#: processes kept busy over the last segment (``/proc/stat``, less this process's own CPU
#: time), are at least its thread count less FREE_SLACK. Such a probe beside a busy core
#: is the costliest there is and can only confirm the current count: measured on 2 cores
#: with one taken by a spinning process, 784-512-256-10 at batch 128 spent 65 ms per
#: two-thread probe, and a fit trained at 0.81-0.95x its one-thread speed. Held this
#: way (one run each, 5 epochs of 20,000 rows, same machine and load): 784-512-256-10 at
#: batch 128 43.4k -> 44.5k samples/s, with Adam 40.0k -> 44.0k, at batch 32 26.9k ->
#: 28.7k; 16-64-64-64-64-1's epoch spread 1.08-7.53 -> 1.04-1.37 in three runs. A freed
#: core is found at the next segment. Where the counters cannot be read (not Linux),
#: probes run as they come.
FREE_SLACK: float = 0.5
#: The load is read over at least this much time: ``/proc/stat`` counts in clock ticks
#: of 10 ms, so a shorter window is mostly rounding.
LOAD_WINDOW: float = 0.05


class CoreLoad:
    """How many cores processes other than this one kept busy, from the kernel's CPU
    counters (``/proc/stat``: every state but idle and iowait, steal included, which on a
    VM is time the host gave away) less this process's CPU time, in each window of at
    least :data:`LOAD_WINDOW` seconds. ``clock`` and ``own`` (wall and this process's CPU
    seconds) are parameters for tests."""

    def __init__(self, path: str = "/proc/stat", clock=time.monotonic, own=time.process_time) -> None:
        self.cores = os.cpu_count() or 1
        self._path, self._clock, self._own = path, clock, own
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()

    @classmethod
    def for_machine(cls) -> CoreLoad | None:
        """One reading this machine's counters; None where there are none to read."""
        try:
            return cls()
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def _sample(self) -> tuple[float, float, float]:
        with open(self._path, "rb") as f:
            fields = f.readline().split()
        if fields[0] != b"cpu":
            raise ValueError(f"{self._path}: no 'cpu' line first")
        ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
        busy = sum(ticks) - ticks[3] - ticks[4]
        return self._clock(), busy / self._tick, self._own()

    def others(self) -> float | None:
        """Cores others kept busy, on average, since the last window closed; None while the
        window is shorter than :data:`LOAD_WINDOW` (it stays open)."""
        if self._clock() - self._last[0] < LOAD_WINDOW:  # (a reading costs ~10 us: not every segment)
            return None
        now = self._sample()
        wall = now[0] - self._last[0]
        busy, own = now[1] - self._last[1], now[2] - self._last[2]
        self._last = now
        return max(0.0, (busy - own) / wall)


class ThreadChooser:
    """Chooses the threads for each training segment among ``cap, cap // 2, ..., 1``.

    Call :meth:`choose` before a segment (it returns the thread count and the segment
    length to use) and :meth:`record` after it with the batches run and the seconds taken.

    Examples
    --------
    >>> c = ThreadChooser(2)
    >>> c.choose(64)                          # nothing measured yet: a short segment
    (2, 16)
    >>> c.record(2, 16, 0.16)                 # 100 batches/s on 2 threads
    >>> c.choose(64)                          # then a very short look at the other count
    (1, 2)
    >>> c.record(1, 2, 0.01)                  # 10 ms: too short to judge, look on
    >>> c.choose(64)                          # for about MIN_SECONDS in all
    (1, 3)
    >>> c.record(1, 3, 0.015)                 # 200 batches/s on 1: a core is busy
    >>> c.choose(64)
    (1, 64)
    """

    def __init__(self, cap: int, load: CoreLoad | None = None) -> None:
        self.cap = cap
        self.load = load  # None: probe more threads whatever the machine's load
        self._others: float | None = None  # cores other processes held in the last window
        self.candidates: list[int] = []
        n = cap
        while n >= 1:
            self.candidates.append(n)
            n = n // 2 if n > 1 else 0
        self.rate: dict[int, float] = {}
        self.current = cap
        self._since_probe = 0
        self._probe_next = False
        self._flip = False
        self._interval = PROBE_EVERY
        self._pending: dict[int, tuple[int, float]] = {}  # count -> time not yet a rate
        self._ran = 0.0  # seconds the current count has run since the last probe

    def choose(self, batches: int) -> tuple[int, int]:
        """(threads, batches) for the next segment, ``batches`` being its normal length.

        A count not measured yet, the current one included, runs a short probe segment
        first, so that a slow choice costs little before it is known to be slow. A probe
        shorter than :data:`MIN_SECONDS` goes on in the next segment."""
        if self.cap == 1:
            return 1, batches
        if self.load is not None:
            others = self.load.others()
            self._others = others if others is not None else self._others
        if self.current not in self.rate:
            return self.current, self._rest(self.current, max(1, int(batches * PROBE_FRACTION)))
        self._since_probe += 1
        unfinished = [n for n in self._pending if n != self.current]
        other = unfinished[0] if unfinished else self._probe_candidate()
        crowded_down = other is not None and other < self.current and self._crowded(self.current)
        if other is not None and (unfinished or self._probe_next or self._since_probe > self._interval
                                  or other not in self.rate
                                  or (crowded_down and self._since_probe > CROWDED_PROBE_EVERY)):  # fmt: skip
            known = self.rate.get(other)
            fraction = FIRST_PROBE_FRACTION * (min(1.0, known / self.rate[self.current]) if known else 1.0)
            n_probe = self._rest(other, max(1, int(batches * fraction)))
            # the rate it will run at: its last one, or for a look being topped up, the look's
            b0, s0 = self._pending.get(other, (0, 0.0))
            expect = b0 / s0 if s0 > 0 else known
            loss = n_probe / expect - n_probe / self.rate[self.current] if expect else 0.0
            # the top-up of a look at fewer threads while others hold the cores: at once
            # (the look's one or two batches say little; the counters say it should win)
            at_once = crowded_down and other in unfinished
            if (at_once or loss <= PROBE_BUDGET * self._ran) and not self._held(other):  # else not yet
                self._since_probe = 0
                self._probe_next = False
                self._ran = 0.0
                return other, n_probe
        return self.current, batches

    def _held(self, threads: int) -> bool:
        """Whether a probe of ``threads``, more than run now, would find too few cores that
        other processes left free (:data:`FREE_SLACK`); False where the load is unknown."""
        return threads > self.current and self._crowded(threads)

    def _crowded(self, threads: int) -> bool:
        """Whether ``threads`` threads have fewer cores than that which other processes
        left free, by the last load reading (:data:`FREE_SLACK`); False where unknown."""
        if self.load is None or self._others is None:
            return False
        return self.load.cores - self._others < threads - FREE_SLACK

    def _rest(self, threads: int, batches: int) -> int:
        """A probe of ``threads`` of ``batches``, or, when it goes on from a segment too short
        to judge, the batches that segment's rate says are left to :data:`MIN_SECONDS`."""
        b0, s0 = self._pending.get(threads, (0, 0.0))
        if s0 <= 0:
            return batches
        return max(batches, int((MIN_SECONDS - s0) * b0 / s0) + 1)

    def record(self, threads: int, batches: int, seconds: float) -> None:
        """Add a segment's measured rate; move to a faster count if it is one."""
        if self.cap == 1 or batches <= 0 or seconds <= 0:
            return
        if threads == self.current:
            self._ran += seconds
        b0, s0 = self._pending.pop(threads, (0, 0.0))
        batches, seconds = batches + b0, seconds + s0
        current = self.rate.get(self.current)
        decisive = (threads != self.current and current is not None and seconds >= DECISIVE_SECONDS
                    and DECISIVE * batches / seconds < current)  # fmt: skip
        if seconds < MIN_SECONDS and not decisive:  # too short to judge: add the next segment of this count
            self._pending[threads] = (batches, seconds)
            return
        r = batches / seconds
        old = self.rate.get(threads)
        probe = threads != self.current
        if probe or old is None:
            self.rate[threads] = r  # the newest figure for that count, whatever came before
        else:
            self.rate[threads] = ALPHA * r + (1 - ALPHA) * old
            if r < DROP * old:  # the machine changed: look around at once
                self._probe_next = True
                self._interval = PROBE_EVERY
        best = max(self.rate, key=self.rate.__getitem__)
        margin = MARGIN if best > self.current or self._crowded(self.current) else MARGIN_DOWN
        if best != self.current and self.rate[best] > margin * self.rate.get(self.current, 0.0):
            self._interval = PROBE_EVERY if best > self.current else PROBE_AFTER_DOWN
            self.current = best
            # a look waiting for its top-up was taken against the count left: start over
            self._pending = {n: p for n, p in self._pending.items() if n == best}
        elif probe:  # the current count confirmed: probe less often
            self._interval = min(2 * self._interval, PROBE_EVERY_MAX)

    def _probe_candidate(self) -> int | None:
        """The neighbouring count to try next: one never measured first, else the one
        measured longest ago, alternating between the count above and the one below."""
        i = self.candidates.index(self.current)
        neighbours = [self.candidates[j] for j in (i - 1, i + 1) if 0 <= j < len(self.candidates)]
        if not neighbours:
            return None
        unseen = [n for n in neighbours if n not in self.rate]
        if unseen:
            return unseen[0]
        self._flip = not self._flip
        return neighbours[int(self._flip) % len(neighbours)]
