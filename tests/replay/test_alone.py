"""What a charger draws alone over its stay: the cap of each session in the energy bound."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.replay.alone import alone_wh
from chargectl.sim.physics.chargers import profile


def test_a_short_stay_is_full_power_for_the_stay() -> None:
    li72 = profile("li72")
    wh = alone_wh(["li72"], [0.1], [1800.0], 220.0)
    # Half an hour in constant current (the soft start's 1.5 s ramp aside).
    assert wh[0] == pytest.approx(li72.full_w * 0.5, rel=0.002)


def test_a_long_stay_is_what_the_pack_takes_then_its_float() -> None:
    li48 = profile("li48")
    hours = 14.0
    wh = alone_wh(["li48"], [0.2], [hours * 3600], 220.0)[0]
    to_full = 0.8 * li48.charge_v * li48.capacity_ah / li48.efficiency
    # Past full, only the float stage's few watts: far below full power for 14 h.
    assert to_full < wh < to_full + li48.float_w * hours + 1.0
    assert wh < li48.full_w * hours / 2


def test_each_charger_its_own_stay_and_none_for_no_one() -> None:
    one = alone_wh(["lead48"], [0.3], [7200.0], 220.0)
    both = alone_wh(["lead48", "li60"], [0.3, 0.5], [7200.0, 3600.0], 220.0)
    assert both[0] == pytest.approx(one[0])
    assert both[1] == pytest.approx(profile("li60").full_w, rel=0.002)
    assert alone_wh([], [], [], 220.0).shape == (0,)
    assert np.all(alone_wh(["li48"], [0.5], [0.0], 220.0) == 0.0)
