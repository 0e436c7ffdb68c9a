"""Opening an Optuna RDB storage (SQLite by default, PostgreSQL for several machines).

Light (no torch): the sweep's parent process imports it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rnnlab.errors import CommandError, first_line

SQLITE_LOCK_TIMEOUT_S = 60  # concurrent sweeps on one SQLite file wait for each other's writes
STORAGE_INIT_ATTEMPTS = 4
# Any fixed 64-bit key: PostgreSQL processes opening one database take this advisory lock while Optuna
# creates its tables, so they do not race to create them (concurrent CREATE TABLE fails on the loser).
SCHEMA_LOCK_KEY = 0x726E6E6C6162  # "rnnlab"
EXAMPLE_URLS = "an Optuna RDB URL, e.g. sqlite:///path/to/optuna.db or postgresql+psycopg2://user@host/db"


class StorageError(CommandError, ValueError):
    """A storage URL that cannot be opened (bad syntax, unknown database, unwritable file); one line."""


def safe_url(url: str) -> str:
    """The storage URL without its password, for logs and messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _refused(url: str, reason: str) -> StorageError:
    return StorageError(f"hydra.sweeper.storage={safe_url(url)!r} cannot be used: {reason}; allowed: {EXAMPLE_URLS}")


def _sqlite_file_problem(database: str) -> str | None:
    """Why a SQLite file cannot be written there, checked before anything is created (None: it can)."""
    path = Path(database).expanduser().absolute()
    if path.is_dir():
        return f"{path} is a directory"
    existing = next(p for p in [path, *path.parents] if p.exists())
    if existing == path:
        return None if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK) else f"{path} is not writable"
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def with_installed_driver(url: str) -> str:
    """``url`` with a driver that is installed, where it names none: SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3, while the ``[postgres]`` extra installs psycopg2. Other URLs unchanged."""
    import importlib.util

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return url
    if importlib.util.find_spec("psycopg2") is None:
        return url  # neither: the error says psycopg is missing, as SQLAlchemy means it
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


@contextmanager
def _schema_lock(url: str, backend: str) -> Iterator[None]:
    """Holds a PostgreSQL advisory lock (released with the session, even if the process dies); other
    backends need none: SQLite writers wait for the file's lock."""
    if backend != "postgresql":
        yield
        return
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)  # no pool: closing the connection ends the session
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK_KEY})")
            yield  # the session's end releases the lock, also where the connection broke meanwhile
    finally:
        engine.dispose()


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, stale_trial_callback=None
):
    """An Optuna RDB storage for ``url``; a SQLite file's folder is created and writers wait for locks.
    ``stale_trial_callback(study, trial)`` is called for each trial failed because its heartbeat went stale.

    Raises ``StorageError`` (one line) for a URL that cannot work, without retrying and without creating
    anything: an unknown scheme or driver, a SQLite path under a file or in a read-only place, a file that is
    not a database.
    """
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

    engine_kwargs: dict[str, Any] = {}
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except (ArgumentError, TypeError) as error:
        raise _refused(str(url), first_line(error)) from None
    given, url = url, with_installed_driver(url)  # messages name the URL as given
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            problem = _sqlite_file_problem(parsed.database)
            if problem:
                raise _refused(url, problem)
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:  # e.g. a read-only file system, where access() says yes to root
                raise _refused(url, f"{error.filename} cannot be created ({error.strerror})") from None
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
    for attempt in range(1, STORAGE_INIT_ATTEMPTS + 1):
        try:
            with _schema_lock(url, backend), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=stale_trial_callback,
                )
        except (IntegrityError, OperationalError, ProgrammingError) as error:
            # Processes opening a new storage at once race to create its tables (on PostgreSQL only a process
            # without the schema lock, e.g. another tool's); the loser finds them next time.
            racing = isinstance(error, IntegrityError) or "already exists" in str(error) or "locked" in str(error)
            if not racing:
                raise _refused(given, str(getattr(error, "orig", None) or first_line(error)).splitlines()[0]) from None
            if attempt == STORAGE_INIT_ATTEMPTS:
                raise
            time.sleep(attempt)
        except (SQLAlchemyError, ImportError, ValueError) as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            raise _refused(given, f"{type(error).__name__}: {reason}") from None
        except optuna.exceptions.StorageInternalError as error:
            raise _refused(given, first_line(error.__cause__ or error)) from None
