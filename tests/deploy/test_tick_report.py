"""tick_report: the control core's arrays become a TickReport the metrics take."""

from __future__ import annotations

import re

import numpy as np
import pytest

from chargectl.control.layout import Layout, build_layout
from chargectl.control.observe import FAULT_NONE, FAULT_OVER_TEMP, Decision, Observation
from chargectl.outputs.metrics import MetricsError, SessionEnd, ShedMetrics, tick_report
from tests.deploy.sheds import BUILD, make_shed, samples, value


def arrays(layout: Layout) -> tuple[Observation, Decision]:
    b, c = layout.n_bays, layout.n_circuits
    obs = Observation.empty(layout)
    obs.bay_up[:] = True
    obs.bay_current_a[:] = np.arange(b) * 0.5
    decision = Decision(
        relay_on=np.zeros(b, dtype=np.bool_),
        setpoint_a=np.full(b, 2.5),
        circuit_current_a=np.arange(c * 3, dtype=np.float64).reshape(c, 3) * layout.circuit_phases,
        limit_a=layout.limit_a.copy(),
        planned_a=np.full((c, 3), 7.0) * layout.circuit_phases,
        binding=np.zeros((c, 3), dtype=np.bool_),
        infeasible=np.zeros((c, 3), dtype=np.bool_),
        overloaded=np.zeros(c, dtype=np.bool_),
        new_overloads=np.zeros(c, dtype=np.bool_),
        thermal_ratio=np.full(c, 0.25),
        unmanaged_a=np.zeros((c, 3)),
        bay_state=("charging",) * b,
        failsafe_mask={},
        welded=np.zeros(b, dtype=np.bool_),
        alarm=None,
    )
    return obs, decision


def test_a_tick_of_arrays_lands_on_the_right_series() -> None:
    shed = make_shed()
    layout = build_layout(shed)
    metrics = ShedMetrics(shed, build=BUILD)
    obs, decision = arrays(layout)
    main = layout.circuit_ids.index("main")
    lights = layout.circuit_ids.index("lights")
    welded_bay = layout.bay_index["pile-a/2"]
    hot_bay = layout.bay_index["pile-b/1"]
    decision.new_overloads[main] = True
    decision.limit_a[main] = 55.0  # derated
    decision.welded[welded_bay] = True
    obs.bay_fault[hot_bay] = FAULT_OVER_TEMP
    decision.alarm = "smoke"
    report = tick_report(
        layout,
        obs,
        decision,
        duration_s=0.02,
        device_up={"pile-a": True, "pile-b": False, "wb-1": True, "meter-main": True},
        errors=[("pile-b", "DeviceTimeout"), ("pile-b", "DeviceDown"), ("meter-main", "BadValue")],
        energy_wh={"wb-1": 1234},
        sessions_active=2,
        session_ends=[SessionEnd("user_stop", 12.0)],
        taps=["started"],
    )
    metrics.update(report)
    t = metrics.render().decode()

    assert value(t, "chargectl_circuit_limit_amperes", circuit="main", phase="3") == 55.0
    row = decision.circuit_current_a[main]
    assert value(t, "chargectl_circuit_current_amperes", circuit="main", phase="2") == row[1]
    # the single-phase branch reports its one phase (L2), taken from the right column
    assert (
        value(t, "chargectl_circuit_current_amperes", circuit="lights", phase="2")
        == (decision.circuit_current_a[lights, 1])
    )
    assert value(t, "chargectl_overload_events_total", circuit="main") == 1
    assert value(t, "chargectl_overload_events_total", circuit="row-a") == 0
    assert value(t, "chargectl_breaker_thermal_ratio", circuit="lights") == 0.25
    j = layout.bay_index["pile-a/3"]
    assert value(t, "chargectl_bay_current_amperes", bay="pile-a/3") == j * 0.5
    assert value(t, "chargectl_bay_fault", bay="pile-a/2", fault="welded") == 1
    assert value(t, "chargectl_bay_fault", bay="pile-b/1", fault="over_temp") == 1
    assert value(t, "chargectl_alarm", kind="smoke") == 1
    assert value(t, "chargectl_alarm", kind="welded") == 1
    assert value(t, "chargectl_device_up", device="pile-b") == 0
    assert value(t, "chargectl_device_errors_total", device="pile-b", error="timeout") == 1
    assert value(t, "chargectl_device_errors_total", device="meter-main", error="bad_value") == 1
    # a unit in backoff was not asked: not a failed request
    errors = [s for s in samples(t) if s.name == "chargectl_device_errors_total"]
    assert sum(s.value for s in errors) == 2
    assert value(t, "chargectl_bay_energy_joules_total", bay="wb-1") == 0  # first sight: base
    assert value(t, "chargectl_tick_duration_seconds_count") == 1
    assert value(t, "chargectl_sessions_total", reason="user_stop") == 1
    bay_states = [s for s in samples(t) if s.name == "chargectl_bay_state" and s.value == 1]
    assert len(bay_states) == layout.n_bays


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda obs, d: obs.bay_fault.__setitem__(0, 99), "unknown fault code 99"),
        (lambda obs, d: setattr(d, "alarm", "flood"), "'flood'"),
        (lambda obs, d: setattr(d, "bay_state", ("asleep",) * len(d.bay_state)), "'asleep'"),
    ],
)
def test_unknown_codes_are_refused(spoil: object, message: str) -> None:
    layout = build_layout(make_shed())
    obs, decision = arrays(layout)
    assert callable(spoil)
    spoil(obs, decision)
    with pytest.raises(MetricsError, match=re.escape(message)):
        tick_report(layout, obs, decision, duration_s=0.01, device_up={})


def test_an_unknown_error_class_is_refused() -> None:
    layout = build_layout(make_shed())
    obs, decision = arrays(layout)
    assert obs.bay_fault[0] == FAULT_NONE
    with pytest.raises(MetricsError, match="unknown error class 'Gremlins'"):
        tick_report(
            layout, obs, decision, duration_s=0.01, device_up={}, errors=[("wb-1", "Gremlins")]
        )
