"""E-bike chargers on the sockets: struct-of-arrays over every socket of the shed.

A charger is constant current (CC) up to `cv_soc`, then constant voltage with the current
tapering in proportion to what is left to fill, then a float stage of a few watts once the
taper falls under `float_fraction` of the CC current. Numbers follow DOMAIN.md: 100..500 W at
the socket, lead-acid at 48 V / 1.8 A about 125 W, a 72 V lithium charger at 5 A about 495 W;
lead-acid reaches float in 6..8 h, lithium holds full current to about 90 %.

At the socket a charger is a constant-power load: I = P / (V * pf), so a sagging supply draws
more amps. Chargers with power-factor correction run at pf 0.95; cheap ones without it (the
`-cheap` profiles) at 0.55..0.65, so their current is 1.5..1.8x what watts / volts suggests.

When its socket gets power (the relay closes, a charger is plugged into a live socket, the
supply returns) a charger's input capacitors charge through its inrush limiter: a peak of
`inrush_a` (at 220 V, proportional to the voltage) decaying with INRUSH_TAU_S, over within
10 ms. The peak is not in the socket's RMS current (the world sums the peaks for the breakers'
magnetic trip and counts their i^2 dt for the meters and the breakers' thermal state). Then
the charger ramps from 0 to its stage power over `ramp_s`, starting its cycle again in CC
(kernels.charge_step: a nearly full pack goes back to CV and float within minutes).
A charger plugged into an open socket waits; an unplugged socket draws nothing. An appliance
(a heater, a modified charger) can sit on a socket instead: resistive, its rated power at the
nominal voltage, full power at once, no state of charge.

Anomalies (issue 12), each a per-socket number the kernels read, so none costs a code path:
- of the pack, cleared when a charger is plugged or unplugged: `no_taper` (CC past cv_soc
  until the socket is cut or the pack unplugged), a cell short that develops after the taper
  (`short_w` more from `short_at_soc`, after `short_after_s` of power, growing by
  `short_grow_w_s`), a modified pack drawing `full_w` far above its profile's (`set_cc_w`);
- of the socket, kept until healed: a poor contact (`contact_depth`): each `charge` (once a
  second in the world) the socket passes 1 - depth * u of the power, u uniform in [0, 1)
  from the bank's own seeded generator, until the next draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chargectl.sim.physics.kernels import charge_step, socket_step

# The inrush: an NTC of about 8 ohm in front of a 150..220 uF bulk capacitor, R * C = 1.2 ..
# 1.8 ms. A pulse is under 1 % of its peak after 5 tau = 7.5 ms.
INRUSH_TAU_S = 0.0015
INRUSH_REF_V = 220.0
PF_RANGE = (0.5, 0.99)


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
    power_factor: float = 0.95  # with power-factor correction: a little reactive current
    float_fraction: float = 0.06  # taper current / CC current below which it floats
    inrush_a: float = 30.0  # inrush peak at 220 V (A)
    # After power returns to a pack above cv_soc: CC held this long, then the CV current
    # falls from full with this time constant (lead-acid absorbs for a quarter hour or so).
    restart_cc_s: float = 30.0
    restart_tau_s: float = 120.0

    @property
    def full_w(self) -> float:
        """Power at the socket in the CC stage."""
        return self.charge_v * self.charge_a / self.efficiency

    @property
    def hours_to_float(self) -> float:
        """From empty at full CC: CC to cv_soc, then the exponential taper to float_fraction."""
        rate = self.charge_a / self.capacity_ah  # state of charge per hour in CC
        cc = self.cv_soc / rate
        cv = (1.0 - self.cv_soc) / rate * np.log(1.0 / self.float_fraction)
        return float(cc + cv)


def _lead(name: str, v: float, a: float, ah: float, float_w: float, **kw: float) -> ChargerProfile:
    """Lead-acid: bulk to 80 %, absorption until the current falls to a fifth, float."""
    opts: dict[str, float] = {
        "float_fraction": 0.2,
        "restart_cc_s": 120.0,
        "restart_tau_s": 600.0,
        "inrush_a": 25.0,
        **kw,
    }
    return ChargerProfile(name, "lead", v, a, ah, 0.80, float_w, **opts)


PROFILES: dict[str, ChargerProfile] = {
    p.name: p
    for p in (
        _lead("lead48", 57.6, 1.8, 12.0, 15.0),
        _lead("lead60", 72.0, 3.2, 20.0, 18.0),
        _lead("lead72", 86.4, 3.0, 20.0, 20.0, inrush_a=30.0),
        ChargerProfile("li48", "li", 54.6, 3.0, 20.0, 0.90, 10.0, inrush_a=25.0),
        ChargerProfile("li60", "li", 67.2, 3.0, 24.0, 0.90, 12.0),
        ChargerProfile("li72", "li", 84.0, 5.0, 30.0, 0.90, 15.0, inrush_a=35.0),
        # No power-factor correction, a smaller NTC (or none): more amps, a higher peak.
        _lead(
            "lead48-cheap", 57.6, 2.0, 12.0, 15.0, efficiency=0.80, power_factor=0.60, inrush_a=40.0
        ),
        ChargerProfile(
            "li48-cheap",
            "li",
            54.6,
            2.5,
            15.0,
            0.90,
            10.0,
            efficiency=0.80,
            power_factor=0.65,
            inrush_a=40.0,
        ),
        ChargerProfile(
            "li60-cheap",
            "li",
            67.2,
            3.0,
            20.0,
            0.90,
            12.0,
            efficiency=0.80,
            power_factor=0.55,
            inrush_a=40.0,
        ),
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

    def __init__(
        self, n: int, *, ramp_s: float = 1.5, nominal_v: float = 220.0, seed: int = 0
    ) -> None:
        self.n = n
        self.ramp_s = ramp_s
        self.nominal_v = nominal_v
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
        self.inrush_a = np.zeros(n)  # inrush peak at 220 V
        self.restart_cc_s = np.zeros(n)
        self.restart_tau_s = np.ones(n)
        self.appliance_w = np.zeros(n)
        # Faults of the pack (cleared by plug and unplug) and of the socket's contact.
        self.no_taper = np.zeros(n, dtype=bool)
        self.short_w = np.zeros(n)
        self.short_at_soc = np.zeros(n)
        self.short_after_s = np.zeros(n)
        self.short_grow_w_s = np.zeros(n)
        self.short_s = np.full(n, -1.0)  # seconds of power since the short was triggered
        self.contact = np.ones(n)  # share of the power the contact passes in this second
        self.contact_depth = np.zeros(n)
        self._erratic = np.zeros(0, dtype=np.int64)  # sockets with a poor contact
        # Its own stream: a poor contact does not move any other draw of the seed.
        self._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(12,)))
        # Power the charger asks for in its present stage (before the ramp).
        self.stage_w = np.zeros(n)
        self.on_s = np.zeros(n)  # seconds since the contacts last closed (0 while open)
        self.amps = np.zeros(n)  # of the last step (updated in place: views stay valid)
        self.watts = np.zeros(n)
        self.pulse_a = np.zeros(n)  # inrush peak of chargers that got power in the last step
        self.pulses = 0  # how many

    # --- changes (control API, scenario) ---
    def plug(
        self, i: int, profile_name: str, soc: float, power_factor: float | None = None
    ) -> None:
        """Plug a charger; `power_factor` overrides the profile's (0.5..0.99)."""
        if not 0.0 <= soc <= 1.0:
            raise ValueError(f"soc must be within 0..1, got {soc}")
        p = profile(profile_name)
        pf = p.power_factor if power_factor is None else power_factor
        if not PF_RANGE[0] <= pf <= PF_RANGE[1]:
            raise ValueError(f"power_factor must be within 0.5..0.99, got {pf}")
        self.plugged[i] = True
        self.profile_idx[i] = PROFILE_NAMES.index(p.name)
        self.soc[i] = soc
        self.full_w[i] = p.full_w
        self.float_w[i] = p.float_w
        self.cv_soc[i] = p.cv_soc
        self.float_frac[i] = p.float_fraction
        self.soc_per_ws[i] = p.efficiency / (p.charge_v * p.capacity_ah * 3600.0)
        self.inv_pf[i] = 1.0 / pf
        self.inrush_a[i] = p.inrush_a * self.nominal_v / INRUSH_REF_V
        self.restart_cc_s[i] = p.restart_cc_s
        self.restart_tau_s[i] = p.restart_tau_s
        self.stage[i] = STAGE_NONE
        self.on_s[i] = 0.0  # plugging into a live socket draws the inrush too
        self._clear_pack_faults(i)
        self._restage(i)

    def unplug(self, i: int) -> None:
        self.plugged[i] = False
        self.profile_idx[i] = -1
        self.stage[i] = STAGE_NONE
        self.stage_w[i] = 0.0
        self.full_w[i] = 0.0
        self.inrush_a[i] = 0.0
        self._clear_pack_faults(i)

    def set_appliance(self, i: int, watts: float) -> None:
        if watts < 0:
            raise ValueError(f"appliance watts must be >= 0, got {watts}")
        self.appliance_w[i] = watts

    # --- anomalies ---
    def set_no_taper(self, i: int, active: bool) -> None:
        """The plugged pack takes CC whatever its state of charge (False: it tapers again)."""
        if active:
            self._need_charger(i, "no taper")
        self.no_taper[i] = active and bool(self.plugged[i])
        self._restage(i)

    def set_cell_short(
        self,
        i: int,
        watts: float,
        at_soc: float = 0.95,
        after_s: float = 0.0,
        grow_w_s: float = 0.0,
    ) -> None:
        """A cell of the plugged pack shorts late in the charge: once the charger has left CC
        at or above `at_soc`, after `after_s` seconds of power, it draws `watts` more, growing
        by `grow_w_s` per second of power. `watts` 0 heals it."""
        if watts < 0 or after_s < 0 or grow_w_s < 0:
            raise ValueError(
                f"cell short: watts, after_s and growth must be >= 0, got {watts}, {after_s}, "
                f"{grow_w_s}"
            )
        if not 0.0 <= at_soc <= 1.0:
            raise ValueError(f"cell short: at_soc must be within 0..1, got {at_soc}")
        if watts > 0:
            self._need_charger(i, "cell short")
        elif not self.plugged[i]:
            return
        self.short_w[i] = watts
        self.short_at_soc[i] = at_soc
        self.short_after_s[i] = after_s
        self.short_grow_w_s[i] = grow_w_s
        self.short_s[i] = -1.0
        self._restage(i)

    def set_cc_w(self, i: int, watts: float) -> None:
        """A modified pack and charger: the plugged charger's CC power at the socket becomes
        `watts` (its taper and float follow as before; the pack fills as much faster).
        0 gives it back its profile's."""
        if watts < 0:
            raise ValueError(f"modified pack: watts must be >= 0, got {watts}")
        if watts > 0:
            self._need_charger(i, "modified pack")
        elif not self.plugged[i]:
            return
        self.full_w[i] = watts if watts > 0 else PROFILES[PROFILE_NAMES[self.profile_idx[i]]].full_w
        self._restage(i)

    def set_contact(self, i: int, depth: float) -> None:
        """A poor contact at the socket: each second it passes 1 - depth * u of the power, u
        uniform in [0, 1). 0 heals it."""
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"poor contact: depth must be within 0..1, got {depth}")
        self.contact_depth[i] = depth
        self.contact[i] = 1.0
        self._erratic = np.flatnonzero(self.contact_depth > 0.0)

    def _need_charger(self, i: int, what: str) -> None:
        if not self.plugged[i]:
            raise ValueError(f"{what}: no charger plugged")

    def _clear_pack_faults(self, i: int) -> None:
        self.no_taper[i] = False
        self.short_w[i] = 0.0
        self.short_s[i] = -1.0

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
        its circuit is `fed` and there is a supply voltage. Chargers that got power in this
        step leave their inrush peak in `pulse_a` (`pulses` counts them)."""
        self.pulses = socket_step(
            closed,
            fed,
            self.on_s,
            self.plugged,
            self.stage,
            self.stage_w,
            self.full_w,
            self.appliance_w,
            self.inv_pf,
            self.inrush_a,
            self.contact,
            cp_index,
            dt,
            1.0 / self.ramp_s,
            volts,
            self.nominal_v,
            self.amps,
            self.watts,
            self.pulse_a,
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
        charge moves over hours). A poor contact draws its next share here."""
        if dt > 0.0 and self._erratic.size:
            e = self._erratic
            self.contact[e] = 1.0 - self.contact_depth[e] * self._rng.random(e.size)
        charge_step(
            self.plugged,
            watts,
            self.soc_per_ws,
            self.cv_soc,
            self.float_frac,
            self.full_w,
            self.float_w,
            self.on_s,
            self.restart_cc_s,
            self.restart_tau_s,
            self.no_taper,
            self.short_w,
            self.short_at_soc,
            self.short_after_s,
            self.short_grow_w_s,
            self.short_s,
            self.soc,
            self.stage,
            self.stage_w,
            dt,
        )

    def _restage(self, i: int) -> None:
        """The stage of a charger just plugged (no charge moved)."""
        self.charge(0.0, np.zeros(self.n))
