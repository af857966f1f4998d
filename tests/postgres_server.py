"""A throwaway PostgreSQL server for tests, as a pytest plugin (`pytest_plugins = [...]`).

`postgres_url` (session-scoped) runs Debian's PostgreSQL binaries on a free loopback port with
its socket in a private folder, trusts connections from loopback only, and yields the URL of a
database made for the tests; `postgres_database` gives each test an empty database of its own.
initdb refuses to run as root, so as root the server's folder belongs to the `postgres` system
user and the binaries run through `runuser -u postgres --`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

PG_BIN_ENV = "SEGUE_PG_BIN"
DEBIAN_PG = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
START_TIMEOUT_S = 60
# A test server: nothing to keep after a crash, so skip the disk flushes.
SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=100")
HBA = ("local all all trust\n"
       "host all all 127.0.0.1/32 trust\n")


def pg_bin() -> Path:
    """The folder of initdb and pg_ctl: $SEGUE_PG_BIN, the newest Debian one, or on PATH."""
    candidates = [Path(os.environ[PG_BIN_ENV])] if PG_BIN_ENV in os.environ else []
    candidates += sorted(DEBIAN_PG.glob("*/bin"), key=lambda p: int(p.parent.name)
                         if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) were not found under "
                f"{DEBIAN_PG}/*/bin, ${PG_BIN_ENV} or PATH: run `make setup` (its "
                "scripts/setup_system.sh installs Debian's postgresql)", pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """One running test server: its folder, port and the binaries' folder."""

    bin: Path
    root: Path          # holds data/, socket/ and server.log
    port: int
    as_user: str | None  # the system user the binaries run as (None: this process's user)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def run(self, tool: str, *args: str) -> None:
        """Runs one of the server's binaries; fails the test with its output and the log."""
        command: list[str] = [str(self.bin / tool), *args]
        if self.as_user is not None:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              timeout=START_TIMEOUT_S + 30, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}"
                        f"{done.stderr}\n{log}", pytrace=False)

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"


def _server_user() -> str | None:
    """`postgres` when running as root (initdb refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.fail(f"running as root needs the `{SERVER_USER}` system user to run PostgreSQL: "
                    "run `make setup` (Debian's postgresql package creates it)", pytrace=False)
    return SERVER_USER


def _own(paths: Sequence[Path], user: str | None) -> None:
    if user is not None:
        for path in paths:
            shutil.chown(path, user, user)


def init_server(bin_dir: Path, root: Path, user: str | None) -> PostgresServer:
    """initdb in `root`/data with loopback-only trust; the server is not started."""
    server = PostgresServer(bin_dir, root, free_port(), user)
    (root / "socket").mkdir(mode=0o700)
    _own([root, root / "socket"], user)
    server.run("initdb", "-D", str(server.data), "-U", SERVER_USER, "-E", "UTF8",
               "--locale=C", "--auth=trust", "--no-sync", "--no-instructions")
    hba = server.data / "pg_hba.conf"
    hba.write_text(HBA)
    _own([hba], user)
    return server


def start(server: PostgresServer) -> None:
    options = [f"-p {server.port}", f"-k {server.root / 'socket'}",
               "-c listen_addresses=127.0.0.1", *(f"-c {s}" for s in SETTINGS)]
    server.run("pg_ctl", "start", "-D", str(server.data), "-l", str(server.log), "-w",
               "-t", str(START_TIMEOUT_S), "-o", " ".join(options))


def stop(server: PostgresServer) -> None:
    server.run("pg_ctl", "stop", "-D", str(server.data), "-m", "fast", "-w")


def _maintenance(server_url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the `postgres` database of the server at `server_url`."""
    url = make_url(server_url)
    return psycopg.connect(host=url.host, port=url.port, user=url.username, dbname="postgres",
                           autocommit=True)


def create_database(server_url: str, dbname: str) -> str:
    """Creates `dbname` on the server of `server_url`; its URL."""
    with _maintenance(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return make_url(server_url).set(database=dbname).render_as_string(hide_password=False)


def drop_database(server_url: str, dbname: str) -> None:
    with _maintenance(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(dbname)))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A running PostgreSQL server's test database, as a SQLAlchemy psycopg URL."""
    bin_dir, user = pg_bin(), _server_user()
    # Not under pytest's tmp folder: as root that is private to root, and `postgres` must
    # reach its folder.
    root = Path(tempfile.mkdtemp(prefix="segue-postgres-"))
    try:
        server = init_server(bin_dir, root, user)
        start(server)
        try:
            yield create_database(server.url("postgres"), "segue_test")
        finally:
            stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """An empty database on the server of `server_url` (from `postgres_url`), dropped after."""
    dbname = f"segue_{secrets.token_hex(6)}"
    url = create_database(server_url, dbname)
    try:
        yield url
    finally:
        drop_database(server_url, dbname)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """An empty database of its own on the test server, for one test."""
    with fresh_database(postgres_url) as url:
        yield url


__all__ = ["PostgresServer", "fresh_database", "pg_bin", "postgres_database", "postgres_url"]
