"""The residents' page, pure: the daemon's status snapshot -> what a resident may see.

No I/O and no clock: `public_state` reads a snapshot and the `FinishEstimator`'s tracks;
`shed_page` and `bay_page` render that state as small self-contained HTML (inline CSS and JS,
nothing fetched from anywhere but the box). The page server (`residents.py`) only routes.

What a resident sees is built field by field from an allow-list: nothing of a snapshot is
copied whole, so a card UID, a card's name or a session id added to the snapshot later can
never reach a page (tests/outputs/test_residents.py plants them and looks for their bytes).

Rows are piles: a socket `pile-a/3` belongs to the row `pile-a` (the pile a resident sees, with
its sticker); a wallbox `wb-1` is a row of its own.

The estimated finish (docs/residents.md): an e-bike charger draws a flat current, then, near
full, its current tapers roughly exponentially until it floats at a few percent of the flat
current. While the current is flat the finish is unknown. Once it has fallen under
`TAPER_RATIO` of the session's peak, samples at least `SAMPLE_S` apart are kept; with
`MIN_FIT_S` of taper the time constant is fitted from the first and last sample, and the time
left until the current reaches `FLOAT_RATIO` of the peak is rounded up to `ROUND_MIN`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

# The estimator's constants (see the module's docstring).
TAPER_RATIO = 0.7  # under this share of the session's peak current the charger is tapering
FLOAT_RATIO = 0.06  # the charger floats (is done) at about this share of its peak
SAMPLE_S = 60.0  # keep taper samples at least this far apart
MIN_FIT_S = 600.0  # fit the taper only over at least this much of it
MIN_PEAK_A = 0.2  # below this a socket never really drew: nothing to estimate
ROUND_MIN = 15  # finishes are rounded up to this many minutes
MAX_ESTIMATE_MIN = 12 * 60  # beyond this the fit says nothing useful: unknown
REFRESH_S = 5  # the pages fetch /api/state.json this often
LAMP_COMPLETE = 7  # chargectl.sessions.machine.Lamp.COMPLETE: the session ended full

# The controller's bay state -> what a resident reads.
STATE_WORDS = {
    "idle": "free",
    "charging": "charging",
    "waiting": "waiting",  # a session is open, the socket waits for its share of the supply
    "paused": "waiting",
    "fault": "out of service",
    "disabled": "out of service",
}


def row_of(bay_id: str) -> str:
    """The row (pile) a bay belongs to: `pile-a/3` -> `pile-a`, a wallbox is its own row."""
    return bay_id.partition("/")[0]


def bay_path(bay_id: str) -> str:
    """The bay page's path, as a QR sticker carries it: `/bay/pile-a/3`."""
    return "/bay/" + quote(bay_id, safe="/")


def resident_state(bay: Mapping[str, Any]) -> str:
    state = str(bay.get("state", ""))
    if state == "idle" and bay.get("lamp") == LAMP_COMPLETE:
        return "done"
    return STATE_WORDS.get(state, "out of service")


@dataclass
class _Track:
    peak_a: float = 0.0
    taper: list[tuple[float, float]] = field(default_factory=list)  # (wall s, amps)
    was_charging: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    minutes: int | None  # rounded up to ROUND_MIN; None: unknown
    text: str


UNKNOWN = Finish(None, "unknown")


class FinishEstimator:
    """Each charging socket's current over its session, fed one snapshot at a time."""

    def __init__(self) -> None:
        self._tracks: dict[str, _Track] = {}

    def observe(self, snapshot: Mapping[str, Any]) -> None:
        wall = _number(snapshot.get("wall"))
        if wall is None:
            return
        seen = set()
        for bay in _bays(snapshot):
            bid = str(bay["id"])
            seen.add(bid)
            state = str(bay.get("state"))
            if state not in ("charging", "waiting", "paused"):
                self._tracks.pop(bid, None)  # the session is over: forget it
                continue
            track = self._tracks.setdefault(bid, _Track())
            amps = _number(bay.get("current_a")) or 0.0
            charging = state == "charging"
            if charging and not track.was_charging:
                track.taper.clear()  # after a pause the charger starts its curve again
            track.was_charging = charging
            if not charging:
                continue
            track.peak_a = max(track.peak_a, amps)
            tapering = track.peak_a >= MIN_PEAK_A and amps < TAPER_RATIO * track.peak_a
            if tapering and (not track.taper or wall - track.taper[-1][0] >= SAMPLE_S):
                track.taper.append((wall, amps))
        for gone in set(self._tracks) - seen:
            del self._tracks[gone]

    def finish(self, bay: Mapping[str, Any]) -> Finish:
        if str(bay.get("state")) != "charging":
            return Finish(None, "")
        track = self._tracks.get(str(bay.get("id")))
        amps = _number(bay.get("current_a")) or 0.0
        if track is None or track.peak_a < MIN_PEAK_A:
            return UNKNOWN
        if amps >= TAPER_RATIO * track.peak_a:
            return Finish(None, "unknown (still charging at full power)")
        soon = Finish(None, "in its last stage, time not yet known")
        if len(track.taper) < 2:
            return soon
        (t0, a0), (t1, a1) = track.taper[0], track.taper[-1]
        if t1 - t0 < MIN_FIT_S or a1 <= 0 or a0 <= a1 * 1.02:
            return soon
        tau_s = (t1 - t0) / math.log(a0 / a1)
        left_s = tau_s * math.log(max(amps, 1e-6) / (FLOAT_RATIO * track.peak_a))
        minutes = max(ROUND_MIN, math.ceil(max(left_s, 0.0) / 60 / ROUND_MIN) * ROUND_MIN)
        if minutes > MAX_ESTIMATE_MIN:
            return UNKNOWN
        return Finish(minutes, f"in about {_duration(minutes)}")


def _duration(minutes: int) -> str:
    h, m = divmod(minutes, 60)
    if h == 0:
        return f"{m} min"
    return f"{h} h" if m == 0 else f"{h} h {m} min"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _bays(snapshot: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    bays = snapshot.get("bays")
    if not isinstance(bays, list):
        return []
    return [b for b in bays if isinstance(b, Mapping) and isinstance(b.get("id"), str)]


# -- the public state ------------------------------------------------------------------------
def public_bay(bay: Mapping[str, Any], estimator: FinishEstimator) -> dict[str, Any]:
    """One socket as a resident may see it: built from an allow-list, nothing copied whole."""
    state = resident_state(bay)
    live = state in ("charging", "waiting")
    power = _number(bay.get("power_w")) if live else None
    energy = _number(bay.get("session_wh")) if live else None
    amps = _number(bay.get("current_a")) if state == "charging" else None
    finish = estimator.finish(bay)
    return {
        "id": str(bay["id"]),
        "row": row_of(str(bay["id"])),
        "state": state,
        "power_w": None if power is None else round(power),
        "energy_wh": None if energy is None else round(energy),
        "current_a": None if amps is None else round(amps, 1),
        "finish_min": finish.minutes,
        "show": {
            "state": state,
            "power": _show_power(state, power, amps),
            "energy": "" if not live else ("unknown" if energy is None else f"{energy:.0f} Wh"),
            "finish": finish.text,
        },
    }


def _show_power(state: str, power: float | None, amps: float | None) -> str:
    if state != "charging":
        return "0 W" if state == "waiting" else ""
    if power is not None:
        return f"{power:.0f} W"
    return "unknown" if amps is None else f"{amps:.1f} A (power not measured)"


def public_state(snapshot: Mapping[str, Any], estimator: FinishEstimator) -> dict[str, Any]:
    """The data of both pages and of /api/state.json."""
    bays = [public_bay(b, estimator) for b in _bays(snapshot)]
    rows: dict[str, list[dict[str, Any]]] = {}
    for b in bays:
        rows.setdefault(b["row"], []).append(b)
    out_rows = []
    for rid, members in rows.items():
        free = [b["id"] for b in members if b["state"] == "free"]
        wait = "" if free else _row_wait(members)
        out_rows.append(
            {
                "id": rid,
                "sockets": len(members),
                "free": len(free),
                "free_ids": free,
                "show": {
                    "free": f"{len(free)} of {len(members)} free",
                    "which": ", ".join(b.partition("/")[2] or b for b in free),
                    "wait": wait,
                },
            }
        )
    wall = _number(snapshot.get("wall"))
    return {
        "ready": bool(bays),
        "shed": str(snapshot.get("shed", ""))[:80],
        "wall": wall,
        "stopped": snapshot.get("alarm") is not None,
        "rows": out_rows,
        "bays": bays,
        "refresh_s": REFRESH_S,
    }


def _row_wait(members: list[dict[str, Any]]) -> str:
    charging = [b for b in members if b["state"] == "charging"]
    known = [b["finish_min"] for b in charging if b["finish_min"] is not None]
    if known:
        return f"next socket free in about {_duration(min(known))} (if its owner comes then)"
    if any(b["show"]["finish"].startswith("in its last stage") for b in charging):
        return "a bike here is nearly charged; time not yet known"
    return "none free; wait unknown"


# -- the pages -------------------------------------------------------------------------------
CSS = """
body{font:16px/1.4 system-ui,sans-serif;margin:0 auto;max-width:34em;padding:0.8em;
color:#111;background:#fafafa}
h1{font-size:1.3em;margin:0.2em 0 0.6em}
.row,.bay{background:#fff;border:1px solid #ccc;border-radius:8px;padding:0.6em 0.8em;
margin:0 0 0.6em}
.row h2{font-size:1.1em;margin:0}
.big{font-size:1.6em;font-weight:bold}
[data-state=free]{color:#05631f}[data-state=charging]{color:#0a4d8c}
[data-state=done]{color:#05631f}[data-state=waiting]{color:#8a5a00}
[data-state="out of service"]{color:#a00}
.muted,footer{color:#555;font-size:0.9em}
.alarm{background:#a00;color:#fff;padding:0.5em;border-radius:6px}
dl{display:grid;grid-template-columns:auto 1fr;gap:0.3em 1em;margin:0}dt{color:#555}dd{margin:0}
"""

# Fetches the state and sets every [data-bay|data-row][data-k] element's text from its `show`.
JS = """
(function(){
var up=document.getElementById('updated');
function when(w){return w?new Date(w*1000).toLocaleTimeString():'';}
function apply(s){
 var rows={},bays={},i,e,o;
 for(i=0;i<s.rows.length;i++)rows[s.rows[i].id]=s.rows[i];
 for(i=0;i<s.bays.length;i++)bays[s.bays[i].id]=s.bays[i];
 var els=document.querySelectorAll('[data-k]');
 for(i=0;i<els.length;i++){e=els[i];
  o=e.hasAttribute('data-bay')?bays[e.getAttribute('data-bay')]:rows[e.getAttribute('data-row')];
  if(!o)continue;
  e.textContent=o.show[e.getAttribute('data-k')];
  if(e.hasAttribute('data-state'))e.setAttribute('data-state',o.state||'');}
 document.getElementById('alarm').hidden=!s.stopped;
 up.textContent='as of '+when(s.wall);
}
function tick(){
 fetch('/api/state.json',{cache:'no-store'}).then(function(r){
  if(!r.ok)throw r.status;return r.json();}).then(apply).catch(function(){
  up.textContent='no contact with the shed: showing the last state known';});
}
setInterval(tick,REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_S * 1000))


def csp_hash(text: str) -> str:
    """The Content-Security-Policy source for an inline script or style."""
    digest = hashlib.sha256(text.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


CSP = (
    "default-src 'none'; "
    f"script-src {csp_hash(JS)}; style-src {csp_hash(CSS)}; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _page(title: str, body: str, state: Mapping[str, Any]) -> str:
    e = html.escape
    alarm_hidden = "" if state["stopped"] else " hidden"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<p id=alarm class=alarm{alarm_hidden}>Charging is stopped: "
        "a safety alarm is on in the shed.</p>"
        f"{body}"
        f"<footer><span id=updated>as of {e(_clock(state['wall']))}</span> · "
        f"updates by itself every {REFRESH_S} s · no personal data is shown</footer>"
        f"<script>{JS}</script></body></html>\n"
    )


def _clock(wall: float | None) -> str:
    if wall is None:
        return "not yet"
    s = int(wall) % 86400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d} UTC"


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def shed_page(state: Mapping[str, Any]) -> str:
    e = html.escape
    name = state["shed"] or "the shed"
    parts = [f"<h1>Charging in {e(name)}</h1>"]
    if not state["ready"]:
        parts.append("<p>The shed's controller is starting: no data yet. Try again soon.</p>")
    for row in state["rows"]:
        rid = _attr(row["id"])
        show = row["show"]
        parts.append(
            f"<section class=row><h2>{e(row['id'])}</h2>"
            f'<p class=big data-row="{rid}" data-k=free>{e(show["free"])}</p>'
            f'<p>Free sockets: <span data-row="{rid}" data-k=which>{e(show["which"])}</span></p>'
            f'<p class=muted data-row="{rid}" data-k=wait>{e(show["wait"])}</p></section>'
        )
    parts.append(
        "<p class=muted>A socket's own page is on the sticker of its pile "
        "(<code>/bay/&lt;pile&gt;/&lt;socket&gt;</code>).</p>"
    )
    return _page(f"{name}: free sockets", "".join(parts), state)


def bay_page(state: Mapping[str, Any], bay: Mapping[str, Any]) -> str:
    e = html.escape
    bid = _attr(bay["id"])
    show = bay["show"]

    def item(label: str, key: str) -> str:
        return f'<dt>{label}</dt><dd data-bay="{bid}" data-k={key}>{e(show[key])}</dd>'

    body = (
        f"<h1>Socket {e(bay['id'])}</h1><section class=bay>"
        f'<p class=big data-bay="{bid}" data-k=state data-state="{_attr(bay["state"])}">'
        f"{e(show['state'])}</p><dl>"
        + item("Energy this session", "energy")
        + item("Power now", "power")
        + item("Estimated finish", "finish")
        + "</dl></section>"
        '<p><a href="/">All rows of the shed</a></p>'
    )
    return _page(f"Socket {bay['id']}", body, state)


def state_json(state: Mapping[str, Any]) -> bytes:
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
