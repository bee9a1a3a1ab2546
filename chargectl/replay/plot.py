"""The replay's picture: one column per recording (policy), three rows, written as a PNG.

Rows, with the same axes across the columns so policies compare at a glance:

1. the peak true current per circuit and phase (solid) against each circuit's limit (dashed,
   same colour);
2. sockets and wallboxes charging, and sessions waiting;
3. each breaker's thermal state (the most of its poles), with 1.0 (it trips) as a red line.

Trips are red vertical lines in every row, faults shaded spans (to the end when open). The x
axis is hours since the replay's start.

A day at a 1 s tick is 86,400 points a line; each line is cut to at most `MAX_POINTS` by
taking the MOST of each run of consecutive ticks (the bucket's first time on the x axis), so a
short peak of current, of the waiting count or of the thermal state still shows.

Drawn on a `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chargectl.replay.recording import Recording

MAX_POINTS = 2000
COLUMN_WIDTH_IN = 6.0
FIGURE_HEIGHT_IN = 9.0
SECONDS_PER_HOUR = 3600.0
TRIP_COLOUR = "red"
FAULT_COLOUR = "orange"


def plot(recs: list[Recording], path: Path) -> None:
    """Draw `recs` side by side and write the PNG to `path`."""
    if not recs:
        raise ValueError("plot needs at least one recording")
    fig = Figure(figsize=(COLUMN_WIDTH_IN * len(recs), FIGURE_HEIGHT_IN))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(recs), sharex=True, sharey="row", squeeze=False)
    end_h = max(_end_s(rec) for rec in recs) / SECONDS_PER_HOUR
    for col, rec in enumerate(recs):
        current_ax, sessions_ax, thermal_ax = axes[:, col]
        current_ax.set_title(f"{rec.policy}: {rec.scenario}")
        _draw_currents(current_ax, rec)
        _draw_sessions(sessions_ax, rec)
        _draw_thermal(thermal_ax, rec)
        for ax in axes[:, col]:
            _draw_marks(ax, rec)
            ax.grid(True, alpha=0.3)
        thermal_ax.set_xlabel("hours since start")
        if end_h > 0:
            thermal_ax.set_xlim(0.0, end_h)
    axes[0, 0].set_ylabel("current (A)")
    axes[1, 0].set_ylabel("sessions")
    axes[2, 0].set_ylabel("breaker thermal (1 = trip)")
    fig.tight_layout()
    fig.savefig(path, format="png")


def downsample(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most `MAX_POINTS` points: the most of each bucket of ticks, at the bucket's start."""
    n = times.shape[0]
    if n <= MAX_POINTS:
        return times, values
    size = -(-n // MAX_POINTS)  # ticks per bucket, rounded up
    starts = np.arange(0, n, size)
    return times[starts], np.maximum.reduceat(values, starts)


def _hours(rec: Recording) -> np.ndarray:
    return rec.times / SECONDS_PER_HOUR


def _end_s(rec: Recording) -> float:
    last = float(rec.times[-1]) + rec.tick_s if rec.ticks else 0.0
    return max(rec.duration_s, last)


def _draw_currents(ax: Axes, rec: Recording) -> None:
    hours = _hours(rec)
    for i, (circuit, phases) in enumerate(zip(rec.circuits, rec.phases, strict=True)):
        colour = f"C{i % 10}"
        for p in phases:
            x, y = downsample(hours, rec.peak_amps[:, i, p - 1])
            ax.plot(x, y, color=colour, linewidth=0.8, label=f"{circuit} L{p}")
        ax.axhline(float(rec.limit_a[i]), color=colour, linestyle="--", linewidth=1.0)
    if rec.circuits:
        ax.legend(loc="upper right", fontsize="x-small")


def _draw_sessions(ax: Axes, rec: Recording) -> None:
    hours = _hours(rec)
    for values, label in ((rec.charging, "charging"), (rec.waiting, "waiting")):
        x, y = downsample(hours, values)
        ax.step(x, y, where="post", linewidth=0.8, label=label)
    ax.legend(loc="upper right", fontsize="x-small")


def _draw_thermal(ax: Axes, rec: Recording) -> None:
    hours = _hours(rec)
    for i, (circuit, phases) in enumerate(zip(rec.circuits, rec.phases, strict=True)):
        if not phases:
            continue
        poles = rec.thermal[:, i, [p - 1 for p in phases]]
        x, y = downsample(hours, poles.max(axis=1))
        ax.plot(x, y, color=f"C{i % 10}", linewidth=0.8, label=circuit)
    ax.axhline(1.0, color=TRIP_COLOUR, linewidth=1.0)


def _draw_marks(ax: Axes, rec: Recording) -> None:
    end_h = _end_s(rec) / SECONDS_PER_HOUR
    for mark in rec.marks:
        start_h = mark.at / SECONDS_PER_HOUR
        if mark.kind == "trip":
            ax.axvline(start_h, color=TRIP_COLOUR, linewidth=1.0)
        else:
            until_h = end_h if mark.until is None else mark.until / SECONDS_PER_HOUR
            ax.axvspan(start_h, until_h, color=FAULT_COLOUR, alpha=0.15, linewidth=0)
