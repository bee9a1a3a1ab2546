"""A replay's trace: its `Recording` as CSV files, from which every report figure is recomputed.

`write_trace(rec, directory)` writes four files, `read_trace(directory)` reads them back, and
`report(read_trace(d)) == report(rec)`, wall time included:

- `replay.json`: what is fixed for the run: scenario, policy, seed, tick_s, duration_s, the
  circuits with their phases and limits, the arrivals turned away, the wall time;
- `ticks.csv`: one row per tick: `time`, `capacity_w`, `charging`, `waiting`, `unused_ratio`,
  then per circuit, for each phase it carries, `<circuit>.L<p>.amps`, `.peak_amps`,
  `.limit_a`, `.thermal`, and per circuit `<circuit>.over_s` and `<circuit>.closed` (1/0);
- `sessions.csv`: one row per session, every `SessionRecord` field under its own name (card,
  bay, tap time, first current, end and its reason, energy wanted, delivered in truth, booked
  in the ledger, relay switches, ...); an empty cell is None;
- `marks.csv`: trips and faults: `at`, `kind`, `label`, `until` (empty: to the end).

Column names: a circuit's id (letters, digits, '-', '_' in the config) is followed by '.' and
the quantity, so a name splits at its LAST dots and even an id with a '.' round-trips; the
reader does not parse names anyway, it asks for the columns `replay.json` implies and fails
with `TraceError` when one is missing. Floats are written with `repr`, the shortest text that
reads back to the same float, so the round trip is exact. A phase a circuit does not carry is
not written and reads back as 0 (as the runner records it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np

from chargectl.replay.recording import Mark, Recording, SessionRecord, empty

META_FILE = "replay.json"
TICKS_FILE = "ticks.csv"
SESSIONS_FILE = "sessions.csv"
MARKS_FILE = "marks.csv"

# Per tick, then per circuit-phase, then per circuit: (column, Recording array).
TICK_COLUMNS = ("time", "capacity_w", "charging", "waiting", "unused_ratio")
TICK_ARRAYS = ("times", "capacity_w", "charging", "waiting", "unused_ratio")
PHASE_COLUMNS = ("amps", "peak_amps", "limit_a", "thermal")
CIRCUIT_COLUMNS = ("over_s", "closed")


class TraceError(ValueError):
    """A trace directory that does not hold what `write_trace` writes; names the file."""


def _text(value: Any) -> str:
    """A cell: '' for None, 1/0 for a bool, repr for a float (exact), str otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def _bool(cell: str) -> bool:
    if cell not in ("0", "1"):
        raise ValueError(f"expected 1 or 0, got {cell!r}")
    return cell == "1"


def _optional_float(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def _optional_str(cell: str) -> str | None:
    return None if cell == "" else cell


# One row per SessionRecord field, in its order: (column, how a cell reads back).
SESSION_COLUMNS: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("id", int),
    ("card", str),
    ("bay", str),
    ("car", _bool),
    ("plug_at", float),
    ("tap_at", float),
    ("first_current_at", _optional_float),
    ("end_at", _optional_float),
    ("end_reason", _optional_str),
    ("leave_at", _optional_float),
    ("soc_start", float),
    ("soc_end", float),
    ("wanted_wh", float),
    ("max_w", float),
    ("delivered_wh", float),
    ("ledger_wh", float),
    ("switches", int),
    ("full", _bool),
    ("alone_wh", float),
)

MARK_COLUMNS: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("at", float),
    ("kind", str),
    ("label", str),
    ("until", _optional_float),
)


def tick_header(rec: Recording) -> list[str]:
    """The columns of `ticks.csv` for `rec`'s circuits and phases."""
    header = list(TICK_COLUMNS)
    for circuit, phases in zip(rec.circuits, rec.phases, strict=True):
        header += [f"{circuit}.L{p}.{q}" for p in phases for q in PHASE_COLUMNS]
        header += [f"{circuit}.{q}" for q in CIRCUIT_COLUMNS]
    return header


def write_trace(rec: Recording, directory: Path) -> list[Path]:
    """Write `rec` as the trace files into `directory` (made if missing); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "scenario": rec.scenario,
        "policy": rec.policy,
        "seed": rec.seed,
        "tick_s": rec.tick_s,
        "duration_s": rec.duration_s,
        "circuits": list(rec.circuits),
        "phases": [list(p) for p in rec.phases],
        "limit_a": rec.limit_a.tolist(),
        "turned_away": rec.turned_away,
        "wall_s": rec.wall_s,
        "ticks": rec.ticks,
    }
    meta_path = directory / META_FILE
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    paths = [meta_path]
    paths.append(_write_csv(directory / TICKS_FILE, tick_header(rec), _tick_rows(rec)))
    paths.append(
        _write_csv(
            directory / SESSIONS_FILE,
            [name for name, _ in SESSION_COLUMNS],
            (astuple(s) for s in rec.sessions),
        )
    )
    paths.append(
        _write_csv(
            directory / MARKS_FILE,
            [name for name, _ in MARK_COLUMNS],
            ((m.at, m.kind, m.label, m.until) for m in rec.marks),
        )
    )
    return paths


def _tick_rows(rec: Recording) -> Iterator[list[Any]]:
    for t in range(rec.ticks):
        row: list[Any] = [getattr(rec, name)[t] for name in TICK_ARRAYS]
        for i, phases in enumerate(rec.phases):
            for p in phases:
                row += [
                    rec.amps[t, i, p - 1],
                    rec.peak_amps[t, i, p - 1],
                    rec.limit_a[i],
                    rec.thermal[t, i, p - 1],
                ]
            row += [rec.over_s[t, i], bool(rec.closed[t, i])]
        yield row


def _write_csv(path: Path, header: list[str], rows: Iterator[Any]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_text(v) for v in row])
    return path


def read_trace(directory: Path) -> Recording:
    """The `Recording` whose trace files are in `directory`."""
    meta_path = directory / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        rec = empty(
            scenario=meta["scenario"],
            policy=meta["policy"],
            seed=int(meta["seed"]),
            tick_s=float(meta["tick_s"]),
            duration_s=float(meta["duration_s"]),
            circuits=tuple(meta["circuits"]),
            phases=tuple(tuple(int(p) for p in phs) for phs in meta["phases"]),
            limit_a=np.asarray(meta["limit_a"], dtype=np.float64),
            n=int(meta["ticks"]),
        )
        rec.turned_away = int(meta["turned_away"])
        rec.wall_s = float(meta["wall_s"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TraceError(f"{meta_path}: {e}") from e
    _read_ticks(rec, directory / TICKS_FILE)
    rec.sessions = [
        SessionRecord(*row) for row in _read_rows(directory / SESSIONS_FILE, SESSION_COLUMNS)
    ]
    rec.marks = [Mark(*row) for row in _read_rows(directory / MARKS_FILE, MARK_COLUMNS)]
    return rec


def _read_ticks(rec: Recording, path: Path) -> None:
    expected = tick_header(rec)
    with _open_csv(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != expected:
            raise TraceError(f"{path}: expected the columns {expected}, found {header}")
        rows = list(reader)
    if len(rows) != rec.ticks:
        raise TraceError(f"{path}: expected {rec.ticks} ticks ({META_FILE}), found {len(rows)}")
    for t, row in enumerate(rows):
        try:
            _fill_tick(rec, t, row)
        except (ValueError, IndexError) as e:
            raise TraceError(f"{path}: line {t + 2}: {e}") from e


def _fill_tick(rec: Recording, t: int, row: list[str]) -> None:
    if len(row) != len(tick_header(rec)):
        raise ValueError(f"{len(row)} cells, expected {len(tick_header(rec))}")
    cells = iter(row)
    for name in TICK_ARRAYS:
        getattr(rec, name)[t] = float(next(cells))
    for i, phases in enumerate(rec.phases):
        for p in phases:
            rec.amps[t, i, p - 1] = float(next(cells))
            rec.peak_amps[t, i, p - 1] = float(next(cells))
            next(cells)  # limit_a: the same each tick, read from replay.json
            rec.thermal[t, i, p - 1] = float(next(cells))
        rec.over_s[t, i] = float(next(cells))
        rec.closed[t, i] = _bool(next(cells))


def _read_rows(
    path: Path, columns: tuple[tuple[str, Callable[[str], Any]], ...]
) -> list[list[Any]]:
    expected = [name for name, _ in columns]
    with _open_csv(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != expected:
            raise TraceError(f"{path}: expected the columns {expected}, found {header}")
        result = []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(columns):
                raise TraceError(f"{path}: line {line}: {len(row)} cells, expected {len(columns)}")
            try:
                result.append([parse(cell) for (_, parse), cell in zip(columns, row, strict=True)])
            except ValueError as e:
                raise TraceError(f"{path}: line {line}: {e}") from e
    return result


def _open_csv(path: Path) -> Any:
    try:
        return path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise TraceError(f"{path}: {e}") from e
