"""The ledger's writer thread: the real `LedgerPort`.

The control tick calls `record()`, which only puts the record on a queue; this thread writes
whatever has queued up in one transaction, so a slow SD card or a staff command holding the
lock delays the ledger, never the tick. A failed write is retried (capped backoff) with the
same records in the same order: nothing is dropped for a busy or full disk. A record the
database refuses (a constraint: a bug) is logged and dropped alone, not with its batch.

The card book the tick reads is an immutable dict this thread replaces when another
connection (the staff command line) has committed: `PRAGMA data_version` tells, cheaply.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from chargectl.sessions import ledger
from chargectl.sessions.cards import CardBook
from chargectl.sessions.errors import LedgerError
from chargectl.sessions.records import Latch, LedgerRecord, LedgerState

log = logging.getLogger("chargectl.sessions.ledger")

MAX_BATCH = 2000
MAX_RETRY_S = 30.0


class _Stop:
    pass


@dataclass(frozen=True, slots=True)
class WriterHealth:
    backlog: int  # records queued, not yet written
    written: int  # records committed since start
    failures: int  # failed write attempts (each retried)
    dropped: int  # records the database refused (logged)
    card_reloads: int
    last_error: str | None  # of the current failure streak; None when writing works


class LedgerWriter:
    def __init__(
        self,
        path: str | Path,
        *,
        reload_s: float = 2.0,  # look for staff changes to the cards at most this often
        retry_s: float = 0.5,  # first retry delay after a failed write (doubles, capped)
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._reload_s = reload_s
        self._retry_s = retry_s
        self._monotonic = monotonic
        # Start-up: `ledger.BadLedger` (content) or `LedgerError` (the disk), one line each.
        self._conn = ledger.connect(self.path)
        try:
            self._version = self._data_version()
            self._book: CardBook = ledger.load_cards(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise ledger.ledger_error(self.path, exc) from exc
        except LedgerError:
            self._conn.close()
            raise
        self._q: queue.SimpleQueue[LedgerRecord | threading.Event | _Stop] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._written = self._failures = self._dropped = self._reloads = 0
        self._last_error: str | None = None

    # ----- LedgerPort -----
    def cards(self) -> CardBook:
        return self._book

    def adopt_cards(self, book: CardBook) -> None:
        """A card book read just after this process changed the cards itself (the central card
        list's commands): the tick judges by it at once, not after the next reload."""
        self._book = book

    def load_state(self, since: float) -> LedgerState:
        with closing(ledger.connect(self.path)) as conn:
            try:
                return ledger.load_state(conn, since)
            except sqlite3.Error as exc:
                raise ledger.ledger_error(self.path, exc) from exc
            except (ValueError, TypeError) as exc:
                raise ledger.BadLedger(
                    f"ledger {self.path}: a session row this build cannot read: {exc}"
                ) from None

    def load_latches(self) -> tuple[Latch, ...]:
        """The latches staff have not cleared (a start-up restores them), read on a connection
        of its own, as `load_state`."""
        with closing(ledger.connect(self.path)) as conn:
            try:
                return ledger.load_latches(conn)
            except sqlite3.Error as exc:
                raise ledger.ledger_error(self.path, exc) from exc
            except (ValueError, TypeError) as exc:
                raise ledger.BadLedger(
                    f"ledger {self.path}: a latch row this build cannot read: {exc}"
                ) from None

    def record(self, rec: LedgerRecord) -> None:
        self._q.put(rec)

    # ----- life cycle -----
    def start(self) -> LedgerWriter:
        self._thread.start()
        return self

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded so far is committed; False on timeout."""
        done = threading.Event()
        self._q.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (trying for up to `timeout`), stop the thread, close the file."""
        if self._thread.is_alive():
            self._q.put(_Stop())
            self._thread.join(timeout)
            self._closing.set()  # a write still retrying gives up now
            self._thread.join()
        self._conn.close()

    def __enter__(self) -> LedgerWriter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def health(self) -> WriterHealth:
        return WriterHealth(
            backlog=self._q.qsize(),
            written=self._written,
            failures=self._failures,
            dropped=self._dropped,
            card_reloads=self._reloads,
            last_error=self._last_error,
        )

    # ----- the thread -----
    def _run(self) -> None:
        next_reload = self._monotonic() + self._reload_s
        stop = False
        while not stop:
            batch: list[LedgerRecord] = []
            markers: list[threading.Event] = []
            try:
                item = self._q.get(timeout=max(0.0, next_reload - self._monotonic()))
            except queue.Empty:
                item = None
            while item is not None:
                if isinstance(item, _Stop):
                    stop = True
                elif isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                self._write(batch)
            for m in markers:
                m.set()
            if self._monotonic() >= next_reload:
                self._reload_cards()
                next_reload = self._monotonic() + self._reload_s

    def _write(self, batch: list[LedgerRecord]) -> None:
        delay = self._retry_s
        while True:
            try:
                ledger.apply(self._conn, batch)
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError, KeyError):
                self._write_one_by_one(batch)
                return
            except sqlite3.Error as exc:
                self._failures += 1
                if self._last_error is None:
                    log.error("ledger %s: write failed, retrying: %s", self.path, exc)
                self._last_error = str(exc)
                if self._closing.wait(delay):
                    log.error("ledger %s: closing with %d records unwritten", self.path, len(batch))
                    return
                delay = min(delay * 2, MAX_RETRY_S)
                continue
            self._written += len(batch)
            if self._last_error is not None:
                log.warning("ledger %s: writing again", self.path)
                self._last_error = None
            return

    def _write_one_by_one(self, batch: list[LedgerRecord]) -> None:
        for rec in batch:
            try:
                ledger.apply(self._conn, [rec])
            except (sqlite3.IntegrityError, sqlite3.ProgrammingError, KeyError) as exc:
                self._dropped += 1
                log.error("ledger %s: record refused, dropped: %r (%s)", self.path, rec, exc)
            except sqlite3.Error:
                self._write([rec])  # a transient error: the retry loop takes it
            else:
                self._written += 1

    def _data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _reload_cards(self) -> None:
        try:
            version = self._data_version()
            if version == self._version:
                return
            self._book = ledger.load_cards(self._conn)
            self._version = version
            self._reloads += 1
        except (sqlite3.Error, ValueError) as exc:
            log.error("ledger %s: cannot reload cards, keeping the old book: %s", self.path, exc)
