"""A throwaway PostgreSQL server for Airflow's metadata database (tests, `make airflow`).

Production Airflow keeps its metadata in PostgreSQL; the embedded default here is SQLite.
`temporary_postgres()` starts the Debian package's server in a temporary directory (initdb,
pg_ctl; as the `postgres` user when run as root, since the server refuses to run as root),
on a free localhost port, with one database and trust authentication, and removes it all
on exit:

    with temporary_postgres() as url:
        env.update(airflow_database_env(url))
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.airflow_env import free_port

DATABASE = "airflow"
USER = "airflow"


def _bin_dir() -> Path:
    """The server binaries (Debian keeps them out of PATH, under /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (make install adds the postgresql package)")
    return Path(initdb).parent


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str]) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-1500:]}")  # fmt: skip


@contextmanager
def temporary_postgres(*, log_path: Path | None = None) -> Iterator[str]:
    """Yield the SQLAlchemy URL (psycopg 3 driver) of a fresh, empty database."""
    binaries = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="pg-airflow-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    log = log_path or root / "server.log"
    if os.geteuid() == 0 and log_path is None:
        log.touch()
        shutil.chown(log, "postgres")
    try:
        _run([str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
              "-E", "UTF8", "--no-sync"])  # fmt: skip
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
              "-w", "-t", "60", "start"])  # fmt: skip
        try:
            _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER,
                  DATABASE])  # fmt: skip
            yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def airflow_database_env(url: str) -> dict[str, str]:
    """Airflow settings for that database. Airflow 3 also opens an async engine and would
    derive `postgresql+asyncpg` from the URL; psycopg 3 serves both, so one driver does."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url,
    }
