"""`chargectl cards`: register, block, unblock, list and import residents' cards, and clear
the mark a critical fire-risk finding puts on a card (`unflag`).

Safe while the daemon runs on the same ledger: each change is one short transaction, and the
daemon's card book picks it up within a few seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from chargectl.cli import UsageError
from chargectl.commands.staff import (
    add_config_argument,
    iso,
    open_ledger,
    short,
    staff_command,
    table,
)

if TYPE_CHECKING:
    from chargectl.sessions.cards import Card
    from chargectl.sessions.records import CardFlag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("add", help="register a card")
    p.add_argument("uid", metavar="UID", help="4, 7 or 8 bytes of hex (case and : - ignored)")
    p.add_argument("--name", required=True, help="the resident's name or flat number")
    p.add_argument("--daily-kwh", metavar="X", help="daily energy limit in kWh")
    p.add_argument("--expires", metavar="YYYY-MM-DD", help="last day the card is valid")
    add_config_argument(p, top=False)
    for action, text in (("block", "block a card"), ("unblock", "unblock a card")):
        p = sub.add_parser(action, help=text)
        p.add_argument("uid", metavar="UID")
        add_config_argument(p, top=False)
    p = sub.add_parser(
        "unflag",
        help="clear a card's fire-risk mark (once staff have spoken to its resident)",
    )
    p.add_argument("uid", metavar="UID")
    add_config_argument(p, top=False)
    p = sub.add_parser("list", help="list the cards (FLAG: a critical fire-risk finding)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    add_config_argument(p, top=False)
    p = sub.add_parser("import", help="add or update cards from a CSV file (all or nothing)")
    p.add_argument("file", metavar="FILE.csv", help="header uid,name[,daily_kwh,expires,status]")
    add_config_argument(p, top=False)


@staff_command
def run(args: argparse.Namespace) -> int:
    from chargectl.sessions import ledger
    from chargectl.sessions.cards import (
        Card,
        parse_cards_csv,
        parse_daily_kwh,
        parse_day,
        parse_name,
        parse_uid,
    )

    wall = time.time()
    if args.action == "add":
        card = Card(
            uid=parse_uid(args.uid),
            name=parse_name(args.name),
            daily_kwh=None if args.daily_kwh is None else parse_daily_kwh(args.daily_kwh),
            expires=None if args.expires is None else parse_day(args.expires, "--expires date"),
        )
        if card.daily_kwh is not None and not _daily_kwh_ok(card.daily_kwh):
            raise UsageError(f"--daily-kwh {args.daily_kwh!r}: {DAILY_KWH_TEXT}")
        with open_ledger(args, create=True) as conn:
            ledger.add_card(conn, card, wall)
        print(f"added card {card.uid} ({card.name})")
    elif args.action in ("block", "unblock"):
        uid = parse_uid(args.uid)
        status = "blocked" if args.action == "block" else "active"
        with open_ledger(args, create=False) as conn:
            changed = ledger.set_status(conn, uid, status, wall)
        word = "blocked" if status == "blocked" else "unblocked"
        print(f"{word} card {uid}" if changed else f"card {uid} was already {word}")
    elif args.action == "unflag":
        uid = parse_uid(args.uid)
        with open_ledger(args, create=False) as conn:
            changed = ledger.unflag_card(conn, uid)
        print(f"cleared the fire-risk mark of card {uid}" if changed else f"card {uid} has no mark")
    elif args.action == "list":
        with open_ledger(args, create=False) as conn:
            cards = ledger.list_cards(conn)
            flags = ledger.card_flags(conn)
        if args.json:
            print(json.dumps([_card_dict(c, flags.get(c.uid)) for c in cards], indent=2))
        else:
            rows = [
                [
                    c.uid,
                    c.status,
                    "" if c.daily_kwh is None else f"{c.daily_kwh:g}",
                    "" if c.expires is None else c.expires.isoformat(),
                    c.name,
                    _flag_text(flags.get(c.uid)),
                ]
                for c in cards
            ]
            print(table(["UID", "STATUS", "DAILY_KWH", "EXPIRES", "NAME", "FLAG"], rows))
    else:  # import
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
        cards = parse_cards_csv(text, str(path))
        for c in cards:
            if c.daily_kwh is not None and not _daily_kwh_ok(c.daily_kwh):
                raise UsageError(
                    f"{path}: card {c.uid}: daily_kwh {c.daily_kwh:g}: {DAILY_KWH_TEXT}"
                )
        with open_ledger(args, create=True) as conn:
            added, updated = ledger.import_cards(conn, cards, wall)
        print(f"imported {len(cards)} card(s) from {path}: {added} added, {updated} updated")
    return 0


# A daily limit below a watt-hour or above what a car takes in a day is a typo (1e-320 would
# refuse every session and read as a limit in `cards list`).
DAILY_KWH_RANGE = (0.001, 1000.0)
DAILY_KWH_TEXT = f"a daily limit must be {DAILY_KWH_RANGE[0]:g}..{DAILY_KWH_RANGE[1]:g} kWh"


def _daily_kwh_ok(kwh: float) -> bool:
    return DAILY_KWH_RANGE[0] <= kwh <= DAILY_KWH_RANGE[1]


def _flag_text(flag: CardFlag | None) -> str:
    return "" if flag is None else f"{short(flag.at)} {flag.reason}"


def _card_dict(c: Card, flag: CardFlag | None = None) -> dict[str, object]:
    return {
        "uid": c.uid,
        "name": c.name,
        "status": c.status,
        "daily_kwh": c.daily_kwh,
        "expires": None if c.expires is None else c.expires.isoformat(),
        "flag": None
        if flag is None
        else {"reason": flag.reason, "at": iso(flag.at), "session": flag.session, "bay": flag.bay},
    }
