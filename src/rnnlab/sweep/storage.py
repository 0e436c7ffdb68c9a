"""Opening an Optuna RDB storage (SQLite by default, PostgreSQL for several machines).

Light (no torch): the sweep's parent process imports it.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

SQLITE_LOCK_TIMEOUT_S = 60  # concurrent sweeps on one SQLite file wait for each other's writes
STORAGE_INIT_ATTEMPTS = 4


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """An Optuna RDB storage for ``url``; a SQLite file's folder is created and writers wait for locks."""
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict[str, Any] = {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
    for attempt in range(1, STORAGE_INIT_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval, grace_period=grace_period
                )
        except SQLAlchemyError:
            # Processes opening a new storage at once race to create its tables; the loser finds them next time.
            if attempt == STORAGE_INIT_ATTEMPTS:
                raise
            time.sleep(attempt)
