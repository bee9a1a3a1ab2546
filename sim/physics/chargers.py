"""E-bike chargers on the sockets: struct-of-arrays over every socket of the shed.

A charger is constant current (CC) up to `cv_soc`, then constant voltage with the current
tapering in proportion to what is left to fill, then a float stage of a few watts once the
taper falls under `float_fraction` of the CC current. Numbers follow DOMAIN.md: 100..500 W at
the socket, lead-acid at 48 V / 1.8 A about 125 W, a 72 V lithium charger at 5 A about 495 W;
lead-acid reaches float in 6..8 h, lithium holds full current to about 90 %.

When its socket's contacts close, a charger draws an inrush (for the first step, a multiple of
its full current: the input capacitors charging) and then ramps from 0 to its stage power
over `ramp_s`. A charger plugged into an open socket waits; an unplugged socket draws nothing.
An appliance (a heater, a modified charger) can sit on a socket instead: resistive, full power
at once, no state of charge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chargectl.sim.physics.kernels import charge_step, socket_step


@dataclass(frozen=True, slots=True)
class ChargerProfile:
    name: str
    chemistry: str  # "lead" or "li"
    charge_v: float  # DC voltage while charging (CV setpoint; used for CC too)
    charge_a: float  # CC current at the pack
    capacity_ah: float
    cv_soc: float  # state of charge where CC ends and the taper starts
    float_w: float  # at the socket, in the float stage
    efficiency: float = 0.86
    power_factor: float = 0.95  # small switched-mode chargers: a little reactive current
    float_fraction: float = 0.06  # taper current / CC current below which it floats

    @property
    def full_w(self) -> float:
        """Power at the socket in the CC stage."""
        return self.charge_v * self.charge_a / self.efficiency


PROFILES: dict[str, ChargerProfile] = {
    p.name: p
    for p in (
        # Lead-acid chargers float when the absorption current falls to about a fifth.
        ChargerProfile("lead48", "lead", 57.6, 1.8, 14.5, 0.85, 15.0, float_fraction=0.2),
        ChargerProfile("lead60", "lead", 72.0, 2.0, 20.0, 0.85, 18.0, float_fraction=0.2),
        ChargerProfile("lead72", "lead", 86.4, 2.5, 20.0, 0.85, 20.0, float_fraction=0.2),
        ChargerProfile("li48", "li", 54.6, 3.0, 20.0, 0.90, 10.0),
        ChargerProfile("li60", "li", 67.2, 3.0, 24.0, 0.90, 12.0),
        ChargerProfile("li72", "li", 84.0, 5.0, 30.0, 0.90, 15.0),
    )
}
PROFILE_NAMES = tuple(PROFILES)

STAGE_NONE, STAGE_CC, STAGE_CV, STAGE_FLOAT = 0, 1, 2, 3
STAGE_NAMES = ("none", "cc", "cv", "float")


def profile(name: str) -> ChargerProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown charger profile {name!r}; known: {', '.join(PROFILE_NAMES)}"
        ) from None


class ChargerBank:
    """Chargers and appliances on `n` sockets. The world owns one for the whole shed."""

    def __init__(self, n: int, *, inrush_factor: float = 3.0, ramp_s: float = 1.5) -> None:
        self.n = n
        self.inrush_factor = inrush_factor
        self.ramp_s = ramp_s
        self.plugged = np.zeros(n, dtype=bool)
        self.profile_idx = np.full(n, -1, dtype=np.int16)
        self.soc = np.zeros(n)
        self.stage = np.zeros(n, dtype=np.int8)
        # Per-socket copies of the plugged profile's numbers (vectorised arithmetic).
        self.full_w = np.zeros(n)
        self.float_w = np.zeros(n)
        self.cv_soc = np.ones(n)
        self.float_frac = np.zeros(n)
        self.soc_per_ws = np.zeros(n)  # d(soc) per joule at the socket (CC stage)
        self.inv_pf = np.ones(n)
        self.inrush_va = np.zeros(n)  # extra volt-amperes on the first step after closing
        self.appliance_w = np.zeros(n)
        # Power the charger asks for in its present stage (before the ramp).
        self.stage_w = np.zeros(n)
        self.on_s = np.zeros(n)  # seconds since the contacts last closed (0 while open)
        self.amps = np.zeros(n)  # of the last step (updated in place: views stay valid)
        self.watts = np.zeros(n)

    # --- changes (control API, scenario) ---
    def plug(self, i: int, profile_name: str, soc: float) -> None:
        if not 0.0 <= soc <= 1.0:
            raise ValueError(f"soc must be within 0..1, got {soc}")
        p = profile(profile_name)
        self.plugged[i] = True
        self.profile_idx[i] = PROFILE_NAMES.index(p.name)
        self.soc[i] = soc
        self.full_w[i] = p.full_w
        self.float_w[i] = p.float_w
        self.cv_soc[i] = p.cv_soc
        self.float_frac[i] = p.float_fraction
        self.soc_per_ws[i] = p.efficiency / (p.charge_v * p.capacity_ah * 3600.0)
        self.inv_pf[i] = 1.0 / p.power_factor
        self.inrush_va[i] = self.inrush_factor * p.full_w / p.power_factor
        self.stage[i] = STAGE_NONE
        self.on_s[i] = 0.0  # plugging into a live socket draws the inrush too
        self._restage(i)

    def unplug(self, i: int) -> None:
        self.plugged[i] = False
        self.profile_idx[i] = -1
        self.stage[i] = STAGE_NONE
        self.stage_w[i] = 0.0
        self.full_w[i] = 0.0
        self.inrush_va[i] = 0.0

    def set_appliance(self, i: int, watts: float) -> None:
        if watts < 0:
            raise ValueError(f"appliance watts must be >= 0, got {watts}")
        self.appliance_w[i] = watts

    # --- the physics ---
    def step(
        self,
        dt: float,
        *,
        closed: np.ndarray,
        fed: np.ndarray,
        volts: float,
        cp_index: np.ndarray,
        own_a: np.ndarray,
        own_w: np.ndarray,
    ) -> None:
        """One step: `amps` and `watts` of every socket (in place), and their sums per
        `cp_index` slot into `own_a` / `own_w`. A socket draws when its contacts are `closed`,
        its circuit is `fed` and there is a supply voltage."""
        socket_step(
            closed,
            fed,
            self.on_s,
            self.stage_w,
            self.appliance_w,
            self.inv_pf,
            self.inrush_va,
            cp_index,
            dt,
            1.0 / self.ramp_s,
            volts,
            self.amps,
            self.watts,
            own_a,
            own_w,
        )

    def power(
        self, dt: float, energized: np.ndarray, volts: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """`step` without circuits: copies of (amps, watts) for this step."""
        sums = np.zeros(1)
        self.step(
            dt,
            closed=energized,
            fed=energized,
            volts=volts,
            cp_index=np.zeros(self.n, np.int64),
            own_a=sums,
            own_w=sums.copy(),
        )
        return self.amps.copy(), self.watts.copy()

    def charge(self, dt: float, watts: np.ndarray) -> None:
        """Move the state of charge for `dt` seconds at `watts` (what `step` drew) and update
        each charger's stage. The world calls this at a slower rate than `step` (state of
        charge moves over hours)."""
        charge_step(
            self.plugged,
            watts,
            self.soc_per_ws,
            self.cv_soc,
            self.float_frac,
            self.full_w,
            self.float_w,
            self.soc,
            self.stage,
            self.stage_w,
            dt,
        )

    def _restage(self, i: int) -> None:
        """The stage of a charger just plugged (no charge moved)."""
        self.charge(0.0, np.zeros(self.n))
