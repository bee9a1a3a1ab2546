"""The daemon serves the residents' page when its config has a `residents:` section, and not
otherwise; `check` refuses a page on another endpoint's port or on a name it cannot bind."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chargectl.cli import main
from tests.rig import CARD, free_port, running_shed, write_config

pytestmark = pytest.mark.timeout(120)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_the_daemon_serves_the_page_of_its_shed(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path,
        "small",
        overrides={
            "control": {"tick_s": 0.25},
            "residents": {"host": "127.0.0.1", "port": port},
            "sim": {"chargers": [{"bay": "pile-a/1", "profile": "li48", "soc": 0.3}]},
        },
    )
    async with running_shed(cfg) as rig:
        assert rig.daemon.residents is not None and rig.daemon.residents.port == port
        rig.tap("pile-a/1", CARD)
        await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "charging", 10, "charging")
        code, page = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/bay/pile-a/1")
        assert code == 200 and "charging" in page
        assert CARD not in page.upper()  # no card UID on a public page
        code, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/bay/pile-z/9")
        assert code == 404
    # Stopped with the daemon.
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(get, f"http://127.0.0.1:{port}/")


async def test_no_section_no_page(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "small", overrides={"control": {"tick_s": 0.25}})
    async with running_shed(cfg) as rig:
        assert rig.daemon.residents is None


@pytest.mark.parametrize(
    ("residents", "message"),
    [
        (
            {"host": "127.0.0.1", "port": 19464},
            "residents.port: 127.0.0.1:19464 is used by metrics",
        ),
        ({"host": "shed.example", "port": 8080}, "residents.host: must be an IP address"),
        ({"host": "0.0.0.0", "port": 70000}, "residents.port"),
        ({"host": "0.0.0.0", "port": 8080, "tls": True}, "residents.tls: unknown key"),
        (7, "residents: expected a mapping or null"),
    ],
)
def test_check_refuses_a_bad_section(
    tmp_path: Path, residents: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = {"host": "127.0.0.1", "port": 19464}
    cfg = write_config(tmp_path, "small", overrides={"metrics": metrics, "residents": residents})
    assert main(["check", str(cfg)]) == 2
    assert message in capsys.readouterr().err
