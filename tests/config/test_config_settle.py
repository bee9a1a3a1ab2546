"""A session settle time shorter than a slow poll: an ended session could settle before its
bay's counter is read again (its last Wh would land on nobody)."""

from __future__ import annotations

from pathlib import Path

from chargectl.config.load import load_checked

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_settle_time_shorter_than_a_slow_poll_is_a_warning(tmp_path: Path) -> None:
    text = (EXAMPLES / "small.yaml").read_text()
    assert "control:\n  tick_s: 1.0" in text
    path = tmp_path / "shed.yaml"
    path.write_text(text.replace("control:\n", "sessions:\n  settle_s: 5\ncontrol:\n", 1))
    checked = load_checked(path)
    [warning] = checked.warnings
    assert warning.path == "sessions.settle_s" and warning.line is not None
    assert "shorter than control.slow_poll_s + control.tick_s (11 s)" in str(warning)
    assert not load_checked(EXAMPLES / "small.yaml").warnings
