"""The benchmark's report: the table printed while it runs, the JSON file and the plot.

:func:`format_table` formats a finished report of ``runner.run_bench`` (the header lines,
then one row per workload); ``run_bench`` prints the same lines as it goes, with
:func:`format_header`, :func:`table_header` and :func:`table_row`. :func:`write_json`
writes every number; :func:`plot_ratios` draws each implementation's speed against NumPy's.

>>> from fastbp.bench.report import format_rate
>>> format_rate(45_123.0), format_rate(1_234_567.0), format_rate(950.0)
('45.1k', '1.23M', '950')
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np


def format_rate(x: float | None) -> str:
    """A samples/s figure in 3 significant digits with a k/M suffix."""
    if x is None or not math.isfinite(x):
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


# ---------------------------------------------------------------------------- table
_COLUMNS = [("workload", 16, "<"), ("rows", 7, ">"), ("fastbp/s", 9, ">"), ("NumPy/s", 9, ">"),
            ("fastbp/NumPy", 12, ">"), ("GFLOP/s", 8, ">"), ("% sgemm", 7, ">"), ("spread", 6, ">")]  # fmt: skip
_PEER_WIDTH = 18
_CHECK_WIDTH = 8


def _line(cells: list[str], peer_cells: list[str], check: str) -> str:
    parts = [f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, _COLUMNS)]
    parts += [f"{c:>{_PEER_WIDTH}}" for c in peer_cells]
    parts.append(f"{check:<{_CHECK_WIDTH}}")
    return "  ".join(parts).rstrip()


def table_header(peers: Sequence[str]) -> str:
    """The column titles (and a rule) for :func:`table_row` lines."""
    head = _line([c[0] for c in _COLUMNS], [f"{p}/s (xNumPy)" for p in peers], "check")
    return head + "\n" + "-" * len(head)


def _peer_cell(p: dict) -> str:
    status = p.get("status")
    if status == "ok":
        ratio = p.get("ratio_vs_numpy")
        return f"{format_rate(p['samples_per_s'])} ({ratio:.2f}x)" if ratio else format_rate(p["samples_per_s"])
    if status == "mismatch":
        return "MISMATCH"
    return status or "-"


def table_row(rec: dict, peers: Sequence[str]) -> str:
    """One workload's line, followed by one ``!`` line per error."""
    impls = rec["impls"]
    f, b = impls.get("fastbp", {}), impls.get("numpy", {})
    ceiling = rec.get("ceiling_gflop_per_s")
    gflops = f.get("gflop_per_s")
    cells = [
        rec["id"],
        str(rec["rows"]),
        format_rate(f.get("samples_per_s")) if f.get("status") != "error" else "ERROR",
        format_rate(b.get("samples_per_s")) if b.get("status") != "error" else "ERROR",
        f"{rec['ratio']:.2f}x" if rec.get("ratio") else "-",
        f"{gflops:.1f}" if gflops else "-",
        f"{100 * gflops / ceiling:.0f}%" if gflops and ceiling else "-",
        f"{f['spread']:.2f}" if f.get("spread") else "-",
    ]
    check = "ok" if rec["ok"] else ("MISMATCH" if any(i.get("status") == "mismatch" for i in impls.values())
                                    else "ERROR")  # fmt: skip
    lines = [_line(cells, [_peer_cell(impls.get(p, {})) for p in peers], check)]
    lines += [f"  ! {rec['id']}: {e}" for e in rec["errors"]]
    return "\n".join(lines)


def format_header(report: dict) -> str:
    """The lines above the table: versions, threads, the sgemm ceiling and the method."""
    v, t, c = report["versions"], report["threads"], report["ceiling"]
    blas = ", ".join(f"{p['library']} {p['api']} {p['version']} ({p['num_threads']} threads)" for p in t["blas"])
    peer_bits = []
    for name, status in report["peers"].items():
        peer_bits.append(f"{name} {v[name]} ({t['peers'][name]})" if status is None else f"{name} {status}")
    cfg = report["config"]
    lines = [
        f"fastbp {v['fastbp']} bench | python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, "
        f"scipy {v['scipy']} | {report['machine']['cpu_count']} logical cores, {report['machine']['machine']}",
        f"threads: fastbp {t['fastbp']} (Numba pool {t['numba_pool']}); NumPy baseline BLAS "
        f"{t['numpy_baseline_blas']}; loaded BLAS: {blas}",
        f"sgemm ceiling: {c['gflop_per_s']:.1f} GFLOP/s (NumPy float32 matmul, n={c['n']}, best of {c['reps']}, "
        f"{c['blas_threads']} BLAS threads)",
        f"float32; samples/s = rows / median of {cfg['repeats']} timed epoch(s) after 1 untimed warm-up "
        + (f"and {cfg['trained']} untimed epochs of training " if cfg.get("trained") else "")
        + "(predict passes for infer_*); rows in order, no shuffle; spread = slowest / fastest timed epoch "
        "of fastbp" + (" [--quick]" if cfg["quick"] else ""),
    ]
    if peer_bits:
        lines.append("peers: " + "; ".join(peer_bits))
    return "\n".join(lines)


def format_table(report: dict) -> str:
    """The whole printout of a finished report: header, table and error lines."""
    peers = list(report["peers"])
    body = [table_row(rec, peers) for rec in report["workloads"].values()]
    return "\n".join([format_header(report), "", table_header(peers), *body])


def write_json(report: dict, path: str | os.PathLike) -> None:
    """Write the report as JSON (non-finite numbers as null)."""

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(clean(report), fh, indent=2)
        fh.write("\n")


# ---------------------------------------------------------------------------- plot
PLOT_EXTRA_HINT = "--plot needs matplotlib, which is not installed: pip install 'fastbp[plot]' (or matplotlib>=3.5)"


def require_matplotlib() -> None:
    """Raise ImportError naming the ``plot`` extra when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(PLOT_EXTRA_HINT) from exc


def plot_ratios(report: dict, path: str | os.PathLike) -> None:
    """A PNG bar chart: per workload, each implementation's samples/s divided by NumPy's.

    Uses matplotlib's object API (no pyplot, so no global backend or figure state).
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    recs = list(report["workloads"].values())
    names = ["fastbp", *report["peers"]]
    fig = Figure(figsize=(max(6.0, 1.3 * len(recs) + 2), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    xs = np.arange(len(recs))
    for i, name in enumerate(names):
        vals = []
        for rec in recs:
            impl = rec["impls"].get(name, {})
            ratio = rec.get("ratio") if name == "fastbp" else impl.get("ratio_vs_numpy")
            vals.append(ratio if ratio and impl.get("status") == "ok" else math.nan)  # no bar: no number
        bars = ax.bar(xs + (i - (len(names) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, labels=[f"{v:.2f}" if math.isfinite(v) else "" for v in vals], fontsize=7, padding=2)
    ax.set_yscale("log")  # ratios: 2x faster and 2x slower are the same distance from 1
    ticks = FuncFormatter(lambda v, _: f"{v:g}x")
    ax.yaxis.set_major_formatter(ticks)
    ax.yaxis.set_minor_formatter(ticks)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(xs, [r["id"] for r in recs], rotation=20, ha="right")
    ax.set_ylabel("samples/s vs NumPy (higher is faster)")
    t = report["threads"]
    ax.set_title(f"fastbp {report['versions']['fastbp']} bench: {t['fastbp']} threads, "
                 f"{report['machine']['cpu_count']} cores")  # fmt: skip
    ax.legend()
    fig.savefig(path, dpi=120)
