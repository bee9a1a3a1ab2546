"""Pass 2 of the scenario loader: values, times and names, against the shed's topology and
the simulator's vocabulary (charger profiles, actions). Reports into the converter's problem
list, so pass 1's and pass 2's problems come out together, in file order."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from chargectl.config.convert import Converter
from chargectl.config.load import ConfigError, load_checked
from chargectl.config.problems import Problem, join
from chargectl.config.schema import Shed
from chargectl.replay.scenario_fault_check import FaultChecks, hint
from chargectl.replay.scenario_types import (
    ArrivalsFile,
    CarChoice,
    CarMixFile,
    CarsFile,
    ChargerChoice,
    ChargerMixFile,
    LoadProfile,
    RateFile,
    RatePoint,
    Scenario,
    ScenarioFile,
    Stream,
    Time,
)
from chargectl.sim.physics.chargers import PROFILES
from chargectl.sim.scenario import parse_time
from chargectl.topology import Topology, topology_of

_DAY = 86400.0
_TIME_OF_DAY = re.compile(r"([0-9]{1,2}):([0-5][0-9])(?::([0-5][0-9]))?")
MAX_DURATION_S = 31 * _DAY
_NUM = (int, float)


class Checker(FaultChecks):
    def __init__(self, conv: Converter, source: Path, name: str) -> None:
        self.conv = conv
        self.source = source
        self.name = name
        self.topology: Topology | None = None
        self.shed: Shed | None = None

    # -- reporting -------------------------------------------------------------------------

    def report(self, path: str, message: str) -> None:
        line, p = None, path
        while p:
            if p in self.conv.lines:
                line = self.conv.lines[p]
                break
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        self.conv.problems.append(Problem(self.name, line, path, message))

    def time_of_day(self, value: Time, path: str) -> float | None:
        m = _TIME_OF_DAY.fullmatch(value) if isinstance(value, str) else None
        if m is None or int(m[1]) > 23:
            self.report(path, f"a time of day 'HH:MM' (00:00..23:59) expected, got {value!r}")
            return None
        return int(m[1]) * 3600.0 + int(m[2]) * 60.0 + float(m[3] or 0)

    def duration(self, value: Time, path: str, least: float = 0.0) -> float | None:
        try:
            t = parse_time(value)
        except ValueError as exc:
            self.report(path, str(exc))
            return None
        if not least <= t <= MAX_DURATION_S or (least > 0 and t == 0):
            self.report(path, f"must be within {least:g} s..31 days, got {value!r}")
            return None
        return t

    def pair(self, values: Sequence[Any], path: str, low: float, high: float) -> bool:
        if len(values) != 2:
            self.report(path, f"a range [low, high] expected, got {len(values)} values")
            return False
        if not (low <= values[0] <= values[1] <= high):
            self.report(path, f"low <= high within {low:g}..{high:g} expected, got {list(values)}")
            return False
        return True

    # -- the whole file --------------------------------------------------------------------

    def scenario(self, sf: ScenarioFile | None, faults: yaml.Node | None) -> Scenario | None:
        if sf is not None:
            self.load_shed(sf.shed)
        start = duration = None
        if sf is not None:
            start = self.time_of_day(sf.start, "start")
            duration = self.duration(sf.duration, "duration", least=1.0)
            if not 0 <= sf.seed < 2**63:
                self.report("seed", f"must be within 0..2**63-1, got {sf.seed}")
            if sf.tick_s is not None and not 0.05 <= sf.tick_s <= 60:
                self.report("tick_s", f"must be within 0.05..60 s, got {sf.tick_s:g}")
        arrivals = None if sf is None else self.stream(sf.arrivals, "arrivals")
        cars = None if sf is None else self.stream(sf.cars, "cars")
        unmanaged = None if sf is None else self.unmanaged(sf)
        fault_list = self.faults(faults, start, duration)
        if (
            sf is None
            or self.shed is None
            or start is None
            or duration is None
            or arrivals is None
            or cars is None
            or unmanaged is None
            or fault_list is None
        ):
            return None
        return Scenario(
            name=self.source.stem,
            source=self.source,
            shed=self.shed,
            start_s=start,
            duration_s=duration,
            seed=sf.seed,
            tick_s=self.shed.control.tick_s if sf.tick_s is None else sf.tick_s,
            arrivals=arrivals,
            cars=cars,
            unmanaged=unmanaged,
            faults=tuple(sorted(fault_list, key=lambda f: f.at)),
        )

    def load_shed(self, path: str) -> None:
        target = Path(os.path.normpath(self.source.absolute().parent / path))
        try:
            checked = load_checked(target)
        except ConfigError as exc:
            errors = [p for p in exc.problems if p.severity == "error"]
            self.report(
                "shed", f"the shed config {str(target)!r} does not load ({len(errors)} errors)"
            )
            self.conv.problems.extend(errors)
            return
        self.shed = checked.shed
        self.topology = topology_of(checked.shed)

    # -- arrivals --------------------------------------------------------------------------

    def stream(self, s: ArrivalsFile | CarsFile, path: str) -> Stream | None:
        ok = True
        rate = self.rate(s.rate, join(path, "rate"))
        ok = rate is not None
        mix: list[Any] = []
        entries: list[ChargerMixFile | CarMixFile] = list(s.mix)
        for i, m in enumerate(entries):
            mpath = f"{path}.mix[{i}]"
            if not (0 < m.share <= 1e6):
                self.report(join(mpath, "share"), f"must be > 0, got {m.share:g}")
                ok = False
            ok = self.pair(m.soc, join(mpath, "soc"), 0.0, 1.0) and ok
            if isinstance(m, CarMixFile):
                ok = self.car(m, mpath) and ok
                mix.append(CarChoice(m.share, m.max_a, m.phases, m.capacity_kwh, _two(m.soc)))
            else:
                if m.profile not in PROFILES:
                    self.report(
                        join(mpath, "profile"),
                        f"unknown charger profile '{m.profile}'{hint(m.profile, PROFILES)}",
                    )
                    ok = False
                mix.append(ChargerChoice(m.profile, m.share, _two(m.soc)))
        busy = any(r.per_hour > 0 for r in (rate or ()))
        if busy and not mix:
            self.report(join(path, "mix"), "who arrives: at least one entry expected")
            ok = False
        stay = [self.duration(t, f"{path}.stay[{i}]") for i, t in enumerate(s.stay)]
        after = [
            self.duration(t, f"{path}.stop_early.after[{i}]")
            for i, t in enumerate(s.stop_early.after)
        ]
        if None in stay or None in after:
            return None
        ok = self.pair(stay, join(path, "stay"), 60.0, MAX_DURATION_S) and ok
        ok = self.pair(after, join(path, "stop_early.after"), 0.0, MAX_DURATION_S) and ok
        share = s.stop_early.share
        if not 0.0 <= share <= 1.0:
            self.report(join(path, "stop_early.share"), f"a share 0..1 expected, got {share:g}")
            ok = False
        if busy and self.topology is not None:
            wallbox = isinstance(s, CarsFile)
            if not any(b.is_socket != wallbox for b in self.topology.bays):
                what = "wallbox" if wallbox else "socket"
                self.report(path, f"the shed has no {what} for them to arrive at")
                ok = False
        if not ok or rate is None:
            return None
        return Stream(rate, tuple(mix), _two(stay), share, _two(after))

    def car(self, m: CarMixFile, path: str) -> bool:
        ok = True
        if m.phases not in (1, 3):
            self.report(join(path, "phases"), f"1 or 3 expected, got {m.phases}")
            ok = False
        if not 6.0 <= m.max_a <= 80.0:
            self.report(join(path, "max_a"), f"must be within 6..80 A, got {m.max_a:g}")
            ok = False
        if not 1.0 <= m.capacity_kwh <= 250.0:
            self.report(
                join(path, "capacity_kwh"), f"must be within 1..250, got {m.capacity_kwh:g}"
            )
            ok = False
        return ok

    def rate(self, points: tuple[RateFile, ...], path: str) -> tuple[RatePoint, ...] | None:
        out: list[RatePoint] = []
        for i, p in enumerate(points):
            at = self.time_of_day(p.at, f"{path}[{i}].at")
            if not 0.0 <= p.per_hour <= 100000.0:
                self.report(
                    f"{path}[{i}].per_hour", f"must be within 0..100000, got {p.per_hour:g}"
                )
                return None
            if at is None:
                return None
            if out and at <= out[-1].at_s:
                self.report(f"{path}[{i}].at", "times of day must rise along the list")
                return None
            out.append(RatePoint(at, p.per_hour))
        return tuple(out)

    # -- unmanaged load --------------------------------------------------------------------

    def unmanaged(self, sf: ScenarioFile) -> tuple[LoadProfile, ...] | None:
        out: list[LoadProfile] = []
        seen: dict[str, int] = {}
        ok = True
        for i, u in enumerate(sf.unmanaged):
            path = f"unmanaged[{i}]"
            if u.circuit in seen:
                self.report(
                    join(path, "circuit"),
                    f"circuit '{u.circuit}' has a profile already (unmanaged[{seen[u.circuit]}])",
                )
                ok = False
                continue
            seen[u.circuit] = i
            phases: tuple[int, ...] = ()
            if self.topology is not None:
                ids = self.topology.circuit_phases
                if u.circuit not in ids:
                    self.report(
                        join(path, "circuit"),
                        f"unknown circuit '{u.circuit}'{hint(u.circuit, ids)}",
                    )
                    ok = False
                    continue
                phases = ids[u.circuit]
            if not u.profile:
                self.report(join(path, "profile"), "at least one point expected")
                ok = False
                continue
            points: list[tuple[float, tuple[float, ...]]] = []
            for j, p in enumerate(u.profile):
                ppath = f"{path}.profile[{j}]"
                at = self.time_of_day(p.at, join(ppath, "at"))
                if self.topology is not None and len(p.amps) != len(phases):
                    self.report(
                        join(ppath, "amps"),
                        f"one value per phase of '{u.circuit}' {list(phases)}, got {len(p.amps)}",
                    )
                    ok = False
                if any(not 0.0 <= a <= 10000.0 for a in p.amps):
                    self.report(
                        join(ppath, "amps"), f"amps within 0..10000 expected, got {list(p.amps)}"
                    )
                    ok = False
                if at is None:
                    ok = False
                elif points and at <= points[-1][0]:
                    self.report(join(ppath, "at"), "times of day must rise along the list")
                    ok = False
                else:
                    points.append((at, p.amps))
            if points:
                out.append(LoadProfile(u.circuit, phases, tuple(points)))
        return tuple(out) if ok else None


def _two(values: Sequence[float | None]) -> tuple[float, float]:
    # A range that is not two values is reported by `pair`; this only keeps building safe.
    low, high = (*values, 0.0, 0.0)[:2]
    return (float(low or 0.0), float(high or 0.0))
