"""docs/mqtt.md stays in step with the topic and command tables, and the topics with the ACL."""

from __future__ import annotations

from chargectl.outputs.mqtt_topics import COMMANDS, TOPICS
from chargectl.sessions.manager import TapOutcome
from tests.mqtt.broker import ACL, ROOT

DOC = (ROOT / "docs" / "mqtt.md").read_text()


def rows(table: int) -> dict[str, list[str]]:
    """The rows of the doc's `table`-th table (0-based) whose first cell is a code span."""
    tables: list[dict[str, list[str]]] = []
    inside = False
    for line in DOC.splitlines():
        if line.startswith("|") != inside:
            inside = not inside
            if inside:
                tables.append({})
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[-1][cells[0].strip("`")] = cells
    return tables[table]


def test_every_topic_is_documented_with_its_qos_and_retain() -> None:
    documented = rows(0)
    for t in TOPICS.values():
        cells = documented[t.suffix]
        assert cells[1:] == [str(t.qos), "yes" if t.retain else "no", t.payload], t.key


def test_every_command_is_documented_with_its_fields() -> None:
    documented = rows(2)
    for c in COMMANDS.values():
        cells = documented[c.path]
        assert cells[1:] == [", ".join(f"`{f}`" for f in c.known), c.does], c.path


def test_every_tap_result_is_documented() -> None:
    row = " ".join(rows(1)["events/tap"])
    assert all(f"`{o}`" in row for o in TapOutcome)


def test_the_acl_lets_a_shed_do_what_the_link_does() -> None:
    acl = ACL.read_text()
    assert "pattern write chargectl/%u/#" in acl  # every publication is under chargectl/<shed>/
    assert "pattern read chargectl/%u/cmd/#" in acl  # the link subscribes to cmd/#
