"""A shed for the metrics tests, built from the config types (no YAML loader needed), and
helpers to read an exposition."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from chargectl.config.schema import Breaker, Circuit, Device, Shed, ShedInfo, TcpBus
from chargectl.outputs.metrics import BuildInfo


def make_shed(name: str = "campus") -> Shed:
    """A three-phase supply, a sub-circuit with two piles (3 and 2 sockets), one wallbox on the
    supply, and a single-phase branch that names its own phase."""
    return Shed(
        source=Path("/nonexistent/shed.yaml"),
        shed=ShedInfo(name=name, phases=3),
        circuits=(
            Circuit("main", 63.0, Breaker(63.0), meter="meter-main"),
            Circuit("row-a", 40.0, Breaker(40.0), parent="main"),
            Circuit("lights", 10.0, Breaker(10.0), parent="row-a", phases=(2,)),
        ),
        buses=(TcpBus("line", "127.0.0.1", 5020),),
        devices=(
            Device("meter-main", "sdm630", "line", 10, None, (1, 2, 3)),
            Device("pile-a", "pile", "line", 1, "row-a", (1,), ports=3),
            Device("pile-b", "pile", "line", 2, "row-a", (2,), ports=2),
            Device("wb-1", "evse", "line", 21, "main", (1, 2, 3)),
        ),
    )


BUILD = BuildInfo(version="0.1.0", python="3.11.7", numba="0.68.1")


def samples(text: str) -> list[Sample]:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def value(text: str, name: str, **labels: str) -> float:
    found = [
        s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return float(found[0])
