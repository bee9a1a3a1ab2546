"""The fire-risk watch measured (issue 12), printed as JSON lines:

- `delay`: detection delay per anomaly kind, p50 and p95 over samples with the anomaly injected
  at a random time, pack and seed. Not a replay per sample (a few hours of a small shed per
  sample is minutes of wall time): the live watch itself (`FireWatch.tick`, as the daemon runs
  it every tick) on the simulator's charger and socket physics (`ChargerBank`, `SocketThermal`,
  the ones the replays and the Modbus simulator use), one socket per sample, at the control
  tick (1 s), the watch reading power and temperature as the pile's slow block gives them
  (read every `slow_poll_s`, 10 s by default, at a random phase per socket). Delay: from the
  point where the sign became certain to the tick that reported it. Hard thresholds: the first
  tick the true power (temperature) was at or above the critical level. Slow signs: the point
  where the pack's curve passed the class's threshold (constant current held, energy drawn)
  in truth. A rise after the taper: the short's onset plus `rise_hold_s` (the hold the sign
  needs by design); a poor contact: its onset.
- `false`: false alarms over healthy sessions of every charger profile (12 h each, every state
  of charge, ambient 10..40 C, paused and resumed by rotation, supply dips, late starts), the
  chargers stepped at 5 s, the watch's hard thresholds on every step and `check()` on each
  session's whole per-minute curve; a sample of sessions per profile also through the live
  `FireWatch` (every minute's prefix), which must find the same.
- `cost`: `FireWatch.tick`'s CPU time per tick (thread time: the load of a shared machine
  does not count) for the campus shed (200 sockets, all charging, tapped over the first half
  hour, watched 12 h so the curves reach their longest), as a share of the tick; the same with
  every session tapped in one tick (their minutes end together), with and without the cap on
  curve checks per tick; `check()` on a full 12 h curve.

Run: .venv/bin/python benchmarks/firewatch.py [delay|false|cost ...] [--samples 40]
     [--sessions 5000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.firewatch.curve import Curve
from chargectl.firewatch.detectors import Kind, Severity, check
from chargectl.firewatch.settings import FirewatchSettings, power_class
from chargectl.firewatch.watch import FireWatch, Running
from chargectl.sim.physics.chargers import PROFILE_NAMES, PROFILES, ChargerBank
from chargectl.sim.physics.thermal import SocketThermal

S = FirewatchSettings()
VOLTS = 220.0
W, C = Severity.WARNING, Severity.CRITICAL
LITHIUM = [p for p in PROFILE_NAMES if PROFILES[p].chemistry == "li"]
Arr = np.ndarray


def emit(**row: Any) -> None:
    print(json.dumps(row), flush=True)


def pct(values: list[float], q: float) -> float | None:
    return None if not values else round(float(np.percentile(values, q)), 1)


# ----- detection delay -----


@dataclass
class Target:
    kind: Kind
    severity: Severity
    name: str  # the figure's name


@dataclass
class Plan:
    """One anomaly: what each socket charges, when and how the anomaly starts, when each
    target sign became certain in truth."""

    targets: list[Target]
    horizon_s: float
    profiles: list[str]
    soc: tuple[float, float]
    inject: Callable[[ChargerBank, SocketThermal, int, np.random.Generator], None]
    inject_s: tuple[float, float]  # uniform range of the injection time
    # (t, true watts, true temp, bank, state) -> per target, the sockets certain at t
    certain: Callable[[float, Arr, Arr, ChargerBank, dict[str, Arr]], list[Arr]]
    ambient_c: float = 30.0


def _cc_w(bank: ChargerBank) -> Arr:
    return np.array([PROFILES[PROFILE_NAMES[i]].full_w for i in bank.profile_idx])


def _hard_w(t: float, w: Arr, c: Arr, bank: ChargerBank, st: dict[str, Arr]) -> list[Arr]:
    return [w >= S.over_power_critical_w]


def _hard_c(t: float, w: Arr, c: Arr, bank: ChargerBank, st: dict[str, Arr]) -> list[Arr]:
    return [c >= S.temp_critical_c]


def _no_taper(t: float, w: Arr, c: Arr, bank: ChargerBank, st: dict[str, Arr]) -> list[Arr]:
    """Constant current held (in truth: the session starts in CC and never leaves it) for the
    class's warning and critical hours; energy drawn while charging beyond the class's pack."""
    if "warn_s" not in st:
        classes = [power_class(S, cc) for cc in _cc_w(bank)]
        st["warn_s"] = np.array([k.no_taper_warning_h * 3600.0 for k in classes])
        st["crit_s"] = np.array([k.no_taper_critical_h * 3600.0 for k in classes])
        st["pack_wh"] = np.array([k.pack_warning_wh for k in classes])
        st["wh"] = np.zeros(bank.n)
    st["wh"] += np.where(w > S.float_cut_w, w, 0.0) / 3600.0  # 1 s ticks
    return [t >= st["warn_s"], t >= st["crit_s"], st["wh"] >= st["pack_wh"]]


def _short(t: float, w: Arr, c: Arr, bank: ChargerBank, st: dict[str, Arr]) -> list[Arr]:
    onset = (bank.short_s >= 0.0) & (bank.short_s >= bank.short_after_s)
    st.setdefault("onset", np.full(bank.n, np.nan))
    st["onset"] = np.where(onset & np.isnan(st["onset"]), t, st["onset"])
    return [t >= st["onset"] + S.rise_hold_s]


def _onset(t: float, w: Arr, c: Arr, bank: ChargerBank, st: dict[str, Arr]) -> list[Arr]:
    return [st["injected"]]


def _heater(b: ChargerBank, h: SocketThermal, i: int, r: np.random.Generator) -> None:
    b.set_appliance(i, r.uniform(1000.0, 1800.0))


def _modified(b: ChargerBank, h: SocketThermal, i: int, r: np.random.Generator) -> None:
    b.set_cc_w(i, r.uniform(950.0, 1500.0))


def _hot(b: ChargerBank, h: SocketThermal, i: int, r: np.random.Generator) -> None:
    h.extra_c[i] = r.uniform(32.0, 45.0)  # settles 30..40 K above where the pile cuts at 65 C


def _never_tapers(b: ChargerBank, h: SocketThermal, i: int, r: np.random.Generator) -> None:
    b.set_no_taper(i, True)


def _cell_short(b: ChargerBank, h: SocketThermal, i: int, r: np.random.Generator) -> None:
    b.set_cell_short(i, r.uniform(60.0, 150.0), at_soc=0.95, after_s=r.uniform(0.0, 3600.0))


def _poor_contact(b: ChargerBank, h: SocketThermal, i: int, r: np.random.Generator) -> None:
    b.set_contact(i, r.uniform(0.5, 0.95))


PLANS: dict[str, Plan] = {
    "heater": Plan(
        [Target(Kind.OVER_POWER, C, "heater 1,000-1,800 W: over_power critical")],
        600.0,
        list(PROFILE_NAMES),
        (0.0, 1.0),
        _heater,
        (60.0, 300.0),
        _hard_w,
    ),
    "modified_pack": Plan(
        [Target(Kind.OVER_POWER, C, "modified pack 950-1,500 W: over_power critical")],
        600.0,
        list(PROFILE_NAMES),
        (0.0, 0.5),
        _modified,
        (60.0, 300.0),
        _hard_w,
    ),
    "hot_socket": Plan(
        [Target(Kind.SOCKET_HEAT, C, "socket heating (bad contact): socket_heat critical")],
        3600.0,
        list(PROFILE_NAMES),
        (0.0, 1.0),
        _hot,
        (60.0, 600.0),
        _hard_c,
    ),
    "no_taper": Plan(
        [
            Target(Kind.NO_TAPER, W, "never tapers: no_taper warning"),
            Target(Kind.NO_TAPER, C, "never tapers: no_taper critical"),
            Target(Kind.ENERGY_BEYOND_PACK, W, "never tapers: energy_beyond_pack warning"),
        ],
        12.0 * 3600.0,
        list(PROFILE_NAMES),
        (0.0, 0.5),
        _never_tapers,
        (0.0, 0.0),
        _no_taper,
    ),
    "cell_short": Plan(
        [Target(Kind.RISE_AFTER_TAPER, C, "cell short after the taper (48/60 V lithium)")],
        10.0 * 3600.0,
        [p for p in LITHIUM if p != "li72"],
        (0.6, 0.85),
        _cell_short,
        (0.0, 0.0),
        _short,
    ),
    "cell_short_li72": Plan(
        [Target(Kind.RISE_AFTER_TAPER, C, "cell short after the taper (72 V lithium)")],
        10.0 * 3600.0,
        ["li72"],
        (0.6, 0.85),
        _cell_short,
        (0.0, 0.0),
        _short,
    ),
    "poor_contact": Plan(
        [Target(Kind.ERRATIC_POWER, W, "poor contact (50-95 % dropouts): erratic_power")],
        3600.0,
        list(PROFILE_NAMES),
        (0.0, 0.4),
        _poor_contact,
        (60.0, 1200.0),
        _onset,
    ),
}


def delay(name: str, n: int, seed: int, slow_s: float, use_va: bool = True) -> None:
    plan = PLANS[name]
    rng = np.random.default_rng([seed, len(name)])
    bank, heat = ChargerBank(n, seed=seed), SocketThermal(n, ambient_c=plan.ambient_c)
    for i in range(n):
        bank.plug(i, str(rng.choice(plan.profiles)), float(rng.uniform(*plan.soc)))
    inject_s = np.round(rng.uniform(*plan.inject_s, n))
    phase = rng.uniform(0.0, slow_s, n)
    bays = [f"b{i}" for i in range(n)]
    runs: list[Running | None] = [Running(f"s{i}", f"04{i:06X}", 0.0) for i in range(n)]
    watch = FireWatch(bays, S)
    keys = [(tg.kind, tg.severity) for tg in plan.targets]
    certain = np.full((len(keys), n), np.nan)
    found = np.full((len(keys), n), np.nan)
    st: dict[str, Arr] = {"injected": np.zeros(n, dtype=bool)}
    seen_w, seen_c = np.full(n, np.nan), np.full(n, np.nan)
    on = np.ones(n, dtype=bool)
    t0 = time.perf_counter()
    t = 0.0
    while t < plan.horizon_s:
        for i in np.flatnonzero(~st["injected"] & (inject_s <= t)):
            plan.inject(bank, heat, int(i), rng)
            st["injected"][i] = True
        t += 1.0
        amps, w = bank.power(1.0, on, VOLTS)
        bank.charge(1.0, w)
        heat.step(1.0, amps)
        for k, now in enumerate(plan.certain(t, w, heat.temp_c, bank, st)):
            certain[k] = np.where(now & np.isnan(certain[k]), t, certain[k])
        read = ((t - phase) % slow_s) < 1.0
        seen_w[read], seen_c[read] = w[read], heat.temp_c[read]
        for f in watch.tick(t, runs, seen_w, seen_c, va=amps * VOLTS if use_va else None):
            if (f.kind, f.severity) in keys:
                k, i = keys.index((f.kind, f.severity)), int(f.bay[1:])
                found[k, i] = t if np.isnan(found[k, i]) else found[k, i]
        if not np.isnan(found).any() and not np.isnan(certain).any():
            break
    for k, tg in enumerate(plan.targets):
        ok = ~np.isnan(certain[k]) & ~np.isnan(found[k])
        d = (found[k] - certain[k])[ok].tolist()
        since = (found[k] - inject_s)[~np.isnan(found[k])].tolist()
        emit(
            part="delay",
            anomaly=name,
            kind=str(tg.kind),
            severity=str(tg.severity),
            what=tg.name,
            samples=n,
            certain=int((~np.isnan(certain[k])).sum()),
            detected=int((~np.isnan(found[k])).sum()),
            missed=int((~np.isnan(certain[k]) & np.isnan(found[k])).sum()),
            delay_s_p50=pct(d, 50),
            delay_s_p95=pct(d, 95),
            delay_s_max=None if not d else round(max(d), 1),
            delay_s_min=None if not d else round(min(d), 1),
            since_injection_s_p50=pct(since, 50),
            since_injection_s_p95=pct(since, 95),
            tick_s=1.0,
            slow_poll_s=slow_s,
            va=use_va,
            horizon_h=plan.horizon_s / 3600.0,
            wall_s=round(time.perf_counter() - t0, 1),
        )


# ----- false alarms on healthy charging -----

DT = 5.0
HOURS = 12.0


PATTERNS = ("never paused", "random rotation", "rotation 15/2 min", "supply dips", "late start")


def _energized(rng: np.random.Generator, n: int) -> tuple[Callable[[float], Arr], Arr]:
    """Per socket, one of: never paused; the controller's rotation (on 15..40 min, off
    2..30 min, random each time); a fixed rotation 15/2 min; supply dips of 20 s; a start up
    to 30 min late and then random rotation."""
    kind = rng.integers(0, 5, n)
    phase = rng.uniform(0.0, 3600.0, n)
    dip_every = rng.uniform(1200.0, 3600.0, n)
    late = np.where(kind == 4, rng.uniform(60.0, 1800.0, n), 0.0)
    state = np.ones(n, dtype=bool)
    switch = rng.uniform(900.0, 2400.0, n)
    randomly = (kind == 1) | (kind == 4)

    def at(t: float) -> Arr:
        flip = randomly & (t >= switch)
        if flip.any():
            state[flip] = ~state[flip]
            on_d, off_d = rng.uniform(900.0, 2400.0, n), rng.uniform(120.0, 1800.0, n)
            switch[flip] = t + np.where(state, on_d, off_d)[flip]
        out = np.ones(n, dtype=bool)
        out = np.where(randomly, state, out)
        out = np.where(kind == 2, ((t + phase) % 1020.0) < 900.0, out)
        out = np.where(kind == 3, ((t + phase) % dip_every) >= 20.0, out)
        return out & (t >= late)

    return at, kind


def healthy(profile: str, n: int, seed: int, live: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, PROFILE_NAMES.index(profile)])
    bank = ChargerBank(n, seed=seed)
    heat = SocketThermal(n)
    heat.ambient_c = rng.uniform(10.0, 40.0, n)  # type: ignore[assignment]
    heat.temp_c[:] = heat.ambient_c
    socs = rng.uniform(0.0, 1.0, n)
    for i in range(n):
        bank.plug(i, profile, float(socs[i]))
    energized, pattern = _energized(rng, n)
    steps = int(HOURS * 3600.0 / DT)
    per_min = int(60.0 / DT)
    minutes = steps // per_min
    sum_w, max_w = np.zeros((minutes, n)), np.zeros((minutes, n))
    sum_c = np.zeros((minutes, n))
    phase = rng.uniform(0.0, 10.0, n)
    seen_w, seen_c = np.zeros(n), heat.temp_c.copy()
    hard_w, hard_c = np.zeros(n), np.zeros(n)
    pf = np.full(n, np.inf)  # the watch's lowest power factor seen (FireWatch._Track.power_now)
    keep_w, keep_c, keep_va = (np.zeros((steps, live)) for _ in range(3))
    for k in range(steps):
        t = (k + 1) * DT
        amps, w = bank.power(DT, energized(t), VOLTS)
        bank.charge(DT, w)
        heat.step(DT, amps)
        read = ((t - phase) % 10.0) < DT  # the pile's slow block, every 10 s
        seen_w[read], seen_c[read] = w[read], heat.temp_c[read]
        va = amps * VOLTS
        fresh = read & (seen_w > S.off_w) & (va > 20.0)
        pf[fresh] = np.minimum(pf[fresh], np.minimum(seen_w[fresh] / va[fresh], 1.0))
        est = np.where((pf >= 0.45) & (pf <= 1.0), va * np.where(np.isinf(pf), 0.0, pf), 0.0)
        np.maximum(hard_w, est, out=hard_w)
        m = k // per_min
        sum_w[m] += seen_w
        np.maximum(max_w[m], seen_w, out=max_w[m])
        sum_c[m] += seen_c
        np.maximum(hard_w, seen_w, out=hard_w)
        np.maximum(hard_c, seen_c, out=hard_c)
        keep_w[k], keep_c[k], keep_va[k] = seen_w[:live], seen_c[:live], va[:live]
    t_min = np.arange(minutes) * 60.0
    counts: dict[str, int] = {}
    flagged: list[list[str]] = []
    examples: list[dict[str, Any]] = []
    for i in range(n):
        cv = Curve(
            f"s{i}", "b", "04aa", t_min, sum_w[:, i] / per_min, max_w[:, i], sum_c[:, i] / per_min
        )
        found = [f"{f.kind}/{f.severity}" for f in check(cv, S)]
        if hard_w[i] >= S.over_power_critical_w:
            found.append("over_power/critical (tick)")
        if hard_c[i] >= S.temp_critical_c:
            found.append("socket_heat/critical (tick)")
        for key in set(found):
            counts[key] = counts.get(key, 0) + 1
        if found and len(examples) < 5:
            examples.append(
                {"soc": round(float(socs[i]), 3), "pauses": PATTERNS[pattern[i]], "found": found}
            )
        flagged.append(found)
    # The live watch on the first `live` sessions: every minute's prefix, as the daemon does.
    same = 0
    ticks_t = (np.arange(steps) + 1) * DT
    for i in range(live):
        watch = FireWatch(["b"], S)
        run = [Running(f"s{i}", "04aa", 0.0)]
        got = []
        for k in range(steps):
            w1, c1, va1 = keep_w[k, i : i + 1], keep_c[k, i : i + 1], keep_va[k, i : i + 1]
            for f in watch.tick(ticks_t[k], run, w1, c1, va=va1):
                got.append(f"{f.kind}/{f.severity}")
        same += sorted(set(got)) == sorted({x.replace(" (tick)", "") for x in flagged[i]})
    crit = sum(v for k, v in counts.items() if "critical" in k)
    warn = sum(v for k, v in counts.items() if "warning" in k)
    return {
        "sessions": n,
        "critical": crit,
        "warning": warn,
        "by_kind": counts,
        "live_checked": live,
        "live_same": same,
        "flagged_examples": examples,
    }


def false_alarms(sessions: int, seed: int, live: int) -> None:
    total_c = total_w = total_n = 0
    for profile in PROFILE_NAMES:
        t0 = time.perf_counter()
        r = healthy(profile, sessions, seed, live)
        total_c += r["critical"]
        total_w += r["warning"]
        total_n += r["sessions"]
        emit(
            part="false",
            profile=profile,
            hours=HOURS,
            step_s=DT,
            **r,
            wall_s=round(time.perf_counter() - t0, 1),
        )
    emit(
        part="false",
        profile="all",
        sessions=total_n,
        critical=total_c,
        warning=total_w,
        warnings_per_1000=round(1000.0 * total_w / total_n, 3),
        goal="0 critical, at most 1 warning per 1,000 sessions",
        met=total_c == 0 and total_w <= total_n / 1000.0,
    )


# ----- cost on the campus shed -----


def _campus_run(
    seed: int, seconds: int, stagger_s: float, checks: int
) -> tuple[int, float, list[float]]:
    """FireWatch on the campus shed's sockets, every one charging (tapped within `stagger_s`
    of the start), fed the simulator's power, VA and socket temperature each 1 s tick; the
    watch's time per tick (s)."""
    from chargectl.config.load import load_shed
    from chargectl.control.layout import build_layout

    shed = load_shed(Path(__file__).resolve().parent.parent / "deploy/examples/campus.yaml")
    sockets = [b.id for b in build_layout(shed).bays if b.is_socket]
    n = len(sockets)
    rng = np.random.default_rng(seed)
    bank, heat = ChargerBank(n, seed=seed), SocketThermal(n)
    for i in range(n):
        bank.plug(i, str(rng.choice(PROFILE_NAMES)), float(rng.uniform(0.0, 0.9)))
    starts = np.round(rng.uniform(0.0, stagger_s, n))
    runs: list[Running | None] = [Running(f"s{i}", f"04{i:06X}", starts[i]) for i in range(n)]
    watch = FireWatch(sockets, S, checks_per_tick=checks)
    on, fault = np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64)
    per_tick: list[float] = []
    for k in range(seconds):
        t = float(k + 1)
        amps, w = bank.power(1.0, on, VOLTS)
        bank.charge(1.0, w)
        heat.step(1.0, amps)
        live = [r if t >= starts[i] else None for i, r in enumerate(runs)]
        t0 = time.thread_time()  # CPU time: a shared machine's load does not count
        watch.tick(t, live, w, heat.temp_c, fault=fault, va=amps * VOLTS)
        per_tick.append(time.thread_time() - t0)
    return n, shed.control.tick_s, per_tick


def _stats(seconds: list[float], tick_s: float) -> dict[str, float]:
    ms = np.array(seconds) * 1000.0
    return {
        "watch_ms_mean": round(float(ms.mean()), 3),
        "watch_ms_p99": round(float(np.percentile(ms, 99)), 3),
        "watch_ms_max": round(float(ms.max()), 3),
        "share_of_tick_mean": round(float(ms.mean()) / (tick_s * 1000.0), 5),
        "share_of_tick_max": round(float(ms.max()) / (tick_s * 1000.0), 5),
    }


def cost(seed: int, hours: float) -> None:
    from chargectl.firewatch.watch import CHECKS_PER_TICK

    # Sessions tapped over half an hour, watched for `hours` (their curves grow to that).
    n, tick_s, per_tick = _campus_run(seed, int(hours * 3600), 1800.0, CHECKS_PER_TICK)
    for what, part in (("every tick", per_tick[1800:]), ("the last hour", per_tick[-3600:])):
        emit(
            part="cost",
            shed="campus",
            sockets=n,
            tick_s=tick_s,
            hours=hours,
            taps="over 30 min",
            ticks=what,
            **_stats(part, tick_s),
        )
    # Every session tapped in one tick: their minutes end together.
    for checks in (CHECKS_PER_TICK, 10**6):
        n, tick_s, per_tick = _campus_run(seed, 1800, 0.0, checks)
        emit(
            part="cost",
            shed="campus",
            sockets=n,
            tick_s=tick_s,
            hours=0.5,
            taps="all in one tick",
            checks_per_tick=min(checks, n),
            **_stats(per_tick, tick_s),
        )
    # check() on a full 12 h curve: the cost of one session's minute at its longest.
    t12 = np.arange(720) * 60.0
    w12 = np.where(t12 < 5 * 3600.0, 300.0, 20.0) + np.random.default_rng(seed).normal(0, 2, 720)
    cv = Curve("s", "b", "04aa", t12, w12, w12 + 5.0, np.full(720, 30.0))
    t0 = time.thread_time()
    for _ in range(50):
        check(cv, S)
    one = (time.thread_time() - t0) / 50 * 1000.0
    emit(
        part="cost",
        shed="campus",
        check_ms_on_a_12h_curve=round(one, 3),
        worst_tick_ms_capped=round(one * CHECKS_PER_TICK, 1),
        worst_tick_ms_uncapped=round(one * n, 1),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="*", default=["delay", "false", "cost"])
    ap.add_argument("--samples", type=int, default=40, help="per anomaly kind")
    ap.add_argument("--sessions", type=int, default=5000, help="healthy sessions per profile")
    ap.add_argument("--live", type=int, default=5, help="of those, through the live watch")
    ap.add_argument("--slow-poll", type=float, default=10.0, help="control.slow_poll_s")
    ap.add_argument("--no-va", action="store_true", help="the watch without the tick's VA")
    ap.add_argument("--anomaly", action="append", choices=list(PLANS), help="only these")
    ap.add_argument("--cost-hours", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if "delay" in a.parts:
        for name in a.anomaly or list(PLANS):
            delay(name, a.samples, a.seed, a.slow_poll, not a.no_va)
    if "false" in a.parts:
        false_alarms(a.sessions, a.seed, a.live)
    if "cost" in a.parts:
        cost(a.seed, a.cost_hours)


if __name__ == "__main__":
    main()
