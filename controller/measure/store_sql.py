"""The two databases a results store lives in, behind one small interface: a SQLite file (WAL; the embedded
default, one person's) or a PostgreSQL server (a team's, through psycopg), chosen by the --store value.

The store writes its SQL once, with SQLite's placeholders (`?` and `:name`); the PostgreSQL side turns them
into psycopg's. Each side brings its transactions, its schema-version record and its migration lock."""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from controller.errors import FarmError
from controller.measure.store_schema import SCHEMA_VERSION, statements
from core.extras import install_hint

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PASSWORD_PARAM = re.compile(r"([?&]password=)([^&#]*)")
# libpq's lead-in before the reason itself (the URL in the sentence already names the server)
_LIBPQ_LEAD = re.compile(r'^(connection failed: )?(connection to server (at|on socket) "[^"]*"(, port \d+)? failed: )?'
                         r"(FATAL: )?")
# pg_advisory_xact_lock key: one migration at a time per PostgreSQL database ('edgefarm' in ASCII)
_MIGRATION_LOCK = 0x656467656661726D
RECONNECT_S = 30.0   # how long a store waits for a PostgreSQL server that dropped its connection to answer again


class StoreError(FarmError):
    """The store cannot be used (newer schema, not a store, a server that does not answer): one line from
    farmctl, exit status 1."""


def is_url(target) -> bool:
    """Whether a --store value names a PostgreSQL server rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def location(target: Path | str) -> Path | str:
    """A --store value as the store takes it: a postgresql:// URL stays text, anything else is a file path;
    another URL scheme is one sentence."""
    if isinstance(target, Path) or is_url(target):
        return target
    if _SCHEME.match(str(target)):
        raise StoreError(f"--store {str(target).split('://')[0]}:// is not a store edgefarm can use; give a file "
                         "path (SQLite) or postgresql://USER@HOST:PORT/DATABASE")
    return Path(target)


def masked(url) -> str:
    """A --store value (a path, a URL, or an open store: its .path) fit to print, log or show: a PostgreSQL
    URL with its password replaced by ***, both the USER:PASSWORD@ form and a password= query parameter;
    anything else as it is. Text only, so a URL libpq cannot parse is masked too (its error quotes it)."""
    text = str(getattr(url, "path", url))
    if not is_url(text):
        return text
    scheme, rest = text.split("://", 1)
    userinfo = _userinfo(rest)
    if userinfo:
        rest = f"{userinfo[0]}:***{userinfo[2]}"
    return f"{scheme}://" + _PASSWORD_PARAM.sub(r"\1***", rest)


def _userinfo(rest: str) -> tuple[str, str, str] | None:
    """(user, password, '@HOST...') of a URL after its '://' when its userinfo carries a password. The last
    '@' before the query ends it (a password may hold '@' or '/'), unless the user would then hold one (an
    '@' in the database's name)."""
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    userinfo = head[:head.rindex("@")] if "@" in head else ""
    user, colon, password = userinfo.partition(":")
    if not colon or "@" in user or "/" in user:
        return None
    return user, password, rest[len(userinfo):]


def scrubbed(text: str, url: Path | str) -> str:
    """A driver's message about `url` without its password: the URL masked, and the password alone (as
    written and percent-decoded: libpq may quote one by itself) replaced by ***."""
    url = str(url)
    if not is_url(url):
        return text
    rest = url.split("://", 1)[1]
    secrets = {m.group(2) for m in _PASSWORD_PARAM.finditer(rest)} | {(_userinfo(rest) or ("", "", ""))[1]}
    text = text.replace(url, masked(url))
    for secret in sorted(secrets | {unquote(s) for s in secrets}, key=len, reverse=True):
        if len(secret) >= 4:         # (shorter: no secret worth garbling every message for)
            text = text.replace(secret, "***")
    return text


def retry_locked(step, seconds: float = 30.0):
    """Run a statement SQLite may refuse with 'database is locked' without calling its busy handler (the
    switch to WAL of a file another process is creating), retrying for up to `seconds`."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class SQLiteDB:
    """A SQLite file in WAL mode; writers take the write lock at BEGIN IMMEDIATE (busy timeout 30 s)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        try:
            retry_locked(lambda: self.conn.execute("PRAGMA journal_mode=WAL"))
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise self.unusable(exc) from None

    def unusable(self, exc: Exception) -> StoreError:
        return StoreError(f"'{self.path}' is not a usable results store ({exc}); point --store at another file")

    usage_errors = (sqlite3.DatabaseError,)

    def query(self, sql: str, args: Sequence | dict = ()) -> list[dict]:
        cur = self.conn.execute(sql, args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]   # half the time of sqlite3.Row -> dict

    def execute(self, sql: str, args: Sequence | dict = ()) -> None:
        self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: list) -> None:
        self.conn.executemany(sql, rows)

    def insert(self, sql: str, row: dict) -> int:
        """Run an INSERT into a table with an `id` key; its new id."""
        return self.conn.execute(sql, row).lastrowid

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")   # the write lock now: no upgrade from reader to writer later
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def migrating(self) -> Iterator[int]:
        """A write transaction (another process's migration is waited for) and the version inside it."""
        with self.transaction():
            yield self.version()

    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def set_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version = {int(version)}")

    commit_sent = False

    def lost(self, exc: BaseException) -> bool:
        """A file has no connection to lose."""
        return False

    def reconnect(self, seconds: float | None = None) -> None:
        """Nothing to do for a file (lost() is never true)."""

    def close(self) -> None:
        self.conn.close()


@functools.lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    """SQLite placeholders as psycopg's: `?` -> %s, `:name` -> %(name)s (a '%' of the text doubled)."""
    sql = sql.replace("%", "%%").replace("?", "%s")
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", sql)


class PostgresDB:
    """A PostgreSQL database through psycopg (autocommit outside explicit transactions); the schema version
    in a one-row table, migrations serialized by a transaction-level advisory lock."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.path = self.location = masked(url)
        self._url = url
        self._in_transaction = self.commit_sent = False
        self._gave_up_at: float | None = None
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise StoreError(f"a PostgreSQL store needs the psycopg module: {install_hint('psycopg')}") from None
        self._psycopg, self._dict_row = psycopg, dict_row
        self.usage_errors = (psycopg.Error,)
        try:
            self.conn = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the results store {self.location} ({_reason(exc, self._url)}); check "
                             "that the server runs and the URL in --store or $EDGEFARM_STORE") from None

    def _connect(self):
        return self._psycopg.connect(self._url, autocommit=True, row_factory=self._dict_row, connect_timeout=10,
                                     application_name="farmctl")

    def lost(self, exc: BaseException) -> bool:
        """Whether `exc` is the server dropping this connection (a restart, a network cut, an ended session)."""
        return isinstance(exc, self._psycopg.Error) and self.conn.broken   # (libpq's own errors carry no SQLSTATE)

    def reconnect(self, seconds: float | None = None) -> None:
        """A new connection after the server dropped the old one, tried for up to `seconds` (RECONNECT_S);
        a StoreError saying so when the server does not come back."""
        seconds = RECONNECT_S if seconds is None else seconds
        started = time.monotonic()
        # another thread of this process just waited the whole time in vain: one try, not another wait
        deadline = started if self._gave_up_at and started - self._gave_up_at < seconds else started + seconds
        delay = 0.2
        while True:
            try:
                self.conn = self._connect()
                self._gave_up_at = None
                return
            except self._psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    self._gave_up_at = time.monotonic()
                    raise StoreError(f"lost the connection to the results store {self.location} and could not "
                                     f"reconnect within {seconds:.0f} s ({_reason(exc, self._url)}); the read or "
                                     "write in progress did not happen: check that the server runs, then run the "
                                     "command again (optimize resumes from what is stored)") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def unusable(self, exc: Exception) -> StoreError:
        reason = _reason(exc, self._url, first_line=True)
        return StoreError(f"{self.location} is not a usable results store ({reason}); point --store at another "
                          "database")

    def query(self, sql: str, args: Sequence | dict = ()) -> list[dict]:
        return self.execute(sql, args).fetchall()

    def execute(self, sql: str, args: Sequence | dict = ()):
        """psycopg takes the text as it is without arguments ('%' stays '%'), with them its own placeholders.
        Outside a transaction (reads), a dropped connection is replaced and the statement run again."""
        try:
            return self._execute(sql, args)
        except self._psycopg.Error as exc:
            if self._in_transaction or not self.lost(exc):
                raise
        self.reconnect()
        return self._execute(sql, args)

    def _execute(self, sql: str, args: Sequence | dict):
        return self.conn.execute(_psycopg_sql(sql), args) if args else self.conn.execute(sql)

    def executemany(self, sql: str, rows: list) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(_psycopg_sql(sql), rows)

    def insert(self, sql: str, row: dict) -> int:
        return self.conn.execute(_psycopg_sql(sql + " RETURNING id"), row).fetchone()["id"]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._in_transaction, self.commit_sent = True, False
        try:
            with self.conn.transaction():
                yield
                self.commit_sent = True     # the block ran: leaving the `with` sends COMMIT
        finally:
            self._in_transaction = False

    @contextmanager
    def migrating(self) -> Iterator[int]:
        with self.transaction():   # (a transaction: a dropped connection fails the migration, never half-applies it)
            self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            version = self.version()
            if version == 0:   # (created only when missing: a role without CREATE can use a made store)
                self.execute("CREATE TABLE IF NOT EXISTS edgefarm_schema (version INTEGER NOT NULL)")
            yield version

    def version(self) -> int:
        if self.execute("SELECT to_regclass('edgefarm_schema') AS t").fetchone()["t"] is None:
            return 0
        row = self.execute("SELECT max(version) AS v FROM edgefarm_schema").fetchone()
        return int(row["v"] or 0)

    def set_version(self, version: int) -> None:
        self.execute("DELETE FROM edgefarm_schema")
        self.execute("INSERT INTO edgefarm_schema (version) VALUES (?)", (int(version),))

    def close(self) -> None:
        self.conn.close()


Database = SQLiteDB | PostgresDB


def _reason(exc: Exception, url: str, first_line: bool = False) -> str:
    """A driver's message as one clean sentence without the password: libpq's lines (its hint starts with a
    tab) joined, whitespace collapsed, its lead-in ('connection to server at "HOST", port N failed: ')
    dropped; psycopg's list of every address it tried is left out. `first_line`: a server's error, whose
    further lines quote the statement."""
    text = scrubbed(str(exc).split("Multiple connection attempts failed", 1)[0], url)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line][:1 if first_line else None]
    if not lines:
        return type(exc).__name__
    sentence = _LIBPQ_LEAD.sub("", lines[0], count=1) or lines[0]
    if sentence[:1].isupper() and sentence[1:2].islower():    # 'Connection refused' -> 'connection refused'
        sentence = sentence[0].lower() + sentence[1:]
    for line in lines[1:]:
        sentence += (" " if sentence[-1] in ".?!:;," else ". ") + line
    return sentence


def open_database(target: Path | str) -> Database:
    """Connect to the store's database and bring its schema up to date (in one transaction, the version read
    inside it: two processes opening a new store at once cannot both create it)."""
    where = location(target)
    db = PostgresDB(where) if isinstance(where, str) else SQLiteDB(where)
    try:
        migrate(db)
    except StoreError:
        db.close()
        raise
    except db.usage_errors as exc:
        db.close()
        raise db.unusable(exc) from None
    return db


def migrate(db: Database, target: int = SCHEMA_VERSION) -> None:
    """Apply the numbered migrations from the store's version up to `target`."""
    with db.migrating() as version:
        if version > SCHEMA_VERSION:
            raise StoreError(f"'{db.location}' has schema version {version}, newer than this edgefarm "
                             f"({SCHEMA_VERSION}); upgrade edgefarm")
        for i in range(version, target):
            for stmt in statements(i, db.dialect):
                db.execute(stmt)
            db.set_version(i + 1)
