"""The embedded development cluster: initdb, start, status, URL, stop, with the extensions;
and that it is not an open door (SCRAM passwords, a private password file, a private folder)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest
from conftest import Server, start_throwaway_cluster
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from acgs_db.errors import ConfigurationError
from acgs_db.tooling.devdb import (
    FALLBACK_BASE,
    HOST,
    POINTER,
    DevCluster,
    fallback_root,
    find_bindir,
    pgpass_line,
)
from acgs_db.urls import redact_url

UNDER_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not UNDER_ROOT, reason="changing a folder's owner needs root")


@pytest.fixture
def dev_root(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path / "acgs"


@pytest.fixture(scope="module")
def cluster(pg_server: Server) -> Iterator[DevCluster]:
    """The session's throwaway cluster (made by DevCluster as the embedded one is), else one
    of this module's own."""
    if pg_server.cluster is not None:
        yield pg_server.cluster
        return
    own = start_throwaway_cluster()
    try:
        yield own
    finally:
        own.destroy()
        shutil.rmtree(own.root.parent, ignore_errors=True)


def _password(cluster: DevCluster) -> str:
    line = cluster.passfile.read_text().strip()
    assert line == pgpass_line("postgres", line.rsplit(":", 1)[1]).strip()
    return line.rsplit(":", 1)[1]


def test_start_status_url_stop(dev_root: Path) -> None:
    cluster = DevCluster(dev_root)
    assert cluster.status().initialized is False
    try:
        url = cluster.start()
        status = cluster.status()
        assert status.running and status.url == url
        assert url == (
            f"postgresql://postgres@127.0.0.1:{cluster.port}/acgs?passfile={cluster.passfile}"
        )
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("pg_cron",)
            available = {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM pg_available_extensions"
                    " WHERE name IN ('pg_partman', 'pg_cron')"
                )
            }
            assert available == {"pg_partman", "pg_cron"}
        server_uid = os.stat(f"/proc/{cluster.postmaster_pid()}").st_uid
        # PostgreSQL refuses root: under root the server runs as the postgres account
        expected = pwd.getpwnam("postgres").pw_uid if UNDER_ROOT else os.geteuid()
        assert server_uid == expected
        assert cluster.start() == url  # idempotent
        cluster.stop()
        assert cluster.status().running is False
        assert cluster.start() == url  # the port is kept across restarts
    finally:
        cluster.destroy()
    assert not dev_root.exists()
    assert not cluster.root.exists()


# -- authentication -------------------------------------------------------------------------


def test_pg_hba_asks_everyone_for_a_scram_password(cluster: DevCluster) -> None:
    hba = (cluster.data_dir / "pg_hba.conf").read_text()
    assert "trust" not in hba
    rules = [line.split() for line in hba.splitlines() if line.strip() and line[0] != "#"]
    assert rules == [
        ["host", "all", "all", f"{HOST}/32", "scram-sha-256"],
        ["host", "replication", "all", f"{HOST}/32", "scram-sha-256"],
    ]
    with psycopg.connect(cluster.admin_url()) as conn:
        loaded = conn.execute("SELECT type, auth_method, error FROM pg_hba_file_rules").fetchall()
        assert loaded == [("host", "scram-sha-256", None)] * 2  # what the server really uses
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
        assert str(stored.fetchone()[0]).startswith("SCRAM-SHA-256$")  # type: ignore[index]


def test_the_password_file_is_private_and_no_url_holds_the_password(cluster: DevCluster) -> None:
    info = cluster.passfile.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()  # the invoking user's (root's under root), not postgres'
    password = _password(cluster)
    assert len(password) >= 40
    for url in (cluster.url(), cluster.admin_url(), cluster.status().url or ""):
        assert password not in url and f"passfile={cluster.passfile}" in url
    assert not (cluster.root / "pwfile").exists()  # initdb's copy was removed


async def test_connections_without_the_password_are_refused(
    cluster: DevCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # no ~/.pgpass either
    params = make_conninfo(host=HOST, port=cluster.port, user="postgres", dbname="postgres")
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(params, connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(params, password="wrong", connect_timeout=10)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host=HOST, port=cluster.port, user="postgres", database="postgres", password="wrong"
        )
    # a role made without a password cannot log in at all
    login = "acgs_no_password"
    with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{login}" LOGIN')
    try:
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(params, user=login, connect_timeout=10)
    finally:
        with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{login}"')


@needs_root
def test_another_local_user_cannot_use_the_printed_url(cluster: DevCluster) -> None:
    """The URL names the password file, which only its owner reads: for anyone else it is
    the address of a server that asks for a password they do not have."""
    result = subprocess.run(
        [str(cluster.bindir / "psql"), "-w", cluster.url(), "-c", "SELECT 1"],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"},
        check=False,
    )
    assert result.returncode != 0
    assert "no password supplied" in result.stderr


def test_the_cli_uses_the_folder_from_the_environment_and_prints_a_working_url() -> None:
    # a folder postgres may enter, with a long name: the URL must come out on one line
    folder = Path(tempfile.mkdtemp(prefix="acgs-cli-"))
    folder.chmod(0o755)
    dev_root = folder / ("a-rather-long-folder-name-" * 4) / "acgs"
    env = {**os.environ, "ACGS_DEV_DIR": str(dev_root)}
    env.pop("ACGS_DATABASE_URL", None)
    cli = [sys.executable, "-m", "acgs_db"]

    def run(*args: str) -> str:
        return subprocess.run(
            [*cli, *args], env=env, check=True, capture_output=True, text=True
        ).stdout

    try:
        out = run("dev-db", "url")
        url = out.strip()
        assert out == url + "\n" and len(url) > 120
        cluster = DevCluster(dev_root)
        assert cluster.root == dev_root and url == cluster.url()
        password = _password(cluster)
        assert password not in url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)

        async def asyncpg_user() -> str:
            conn = await asyncpg.connect(url)
            try:
                return str(await conn.fetchval("SELECT current_user"))
            finally:
                await conn.close()

        assert asyncio.run(asyncpg_user()) == "postgres"
        psql = subprocess.run(
            [str(cluster.bindir / "psql"), "-w", "-Atc", "SELECT current_database()", url],
            env={**env, "PGPASSFILE": "/nonexistent"},  # the URL's own passfile is enough
            capture_output=True,
            text=True,
            check=True,
        )
        assert psql.stdout == "acgs\n"
        status = run("dev-db", "status")
        assert status.startswith("running") and url in status and password not in status
        run("dev-db", "stop")
        assert run("dev-db", "status").startswith("stopped")
    finally:
        DevCluster(dev_root).destroy()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_demo_shows_a_configured_url_without_its_password(cluster: DevCluster) -> None:
    password = _password(cluster)
    with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE acgs_demo_redacted")
    url = f"postgresql://postgres:{password}@{HOST}:{cluster.port}/acgs_demo_redacted"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACGS_", "PGPASS"))}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "acgs_db", "demo", "--rows", "200", "--tenants", "2"],
            env={**env, "ACGS_DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr
        assert result.stdout.startswith(
            f"database: postgresql://postgres:***@{HOST}:{cluster.port}/acgs_demo_redacted\n"
        )
    finally:
        with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE acgs_demo_redacted WITH (FORCE)")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cr%40t@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgres://u@h/db?password=s3cr%40t&sslmode=require",
            "postgres://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u@h/db?passfile=/a/pgpass", "postgresql://u@h/db?passfile=/a/pgpass"),
        ("host=h password='unterminated", "***"),
    ],
)
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cr" not in redact_url(url)


def test_redact_url_hides_the_password_of_a_key_value_string() -> None:
    shown = redact_url("host=h user=u password='s3cr@t x' dbname=db")
    assert conninfo_to_dict(shown) == {"host": "h", "user": "u", "password": "***", "dbname": "db"}


# -- an earlier version's cluster -----------------------------------------------------------


def test_a_cluster_made_with_trust_authentication_is_refused(dev_root: Path) -> None:
    cluster = DevCluster(dev_root)
    try:  # what an earlier acgs-db left: an initialised data folder and no password file
        cluster.data_dir.mkdir(parents=True)
        (cluster.data_dir / "PG_VERSION").write_text("15\n")
        for attempt in (cluster.start, cluster.url):
            with pytest.raises(ConfigurationError, match=f"rm -rf {cluster.root}") as caught:
                attempt()
            assert "trust" in str(caught.value)
        assert not cluster.is_running()
        assert cluster.status().url is None
    finally:
        cluster.destroy()


# -- the fallback folder under root ---------------------------------------------------------


@pytest.fixture
def var_tmp(tmp_path: Path) -> Path:
    """A stand-in for /var/tmp: world-writable and sticky, as the real one."""
    base = tmp_path / "var-tmp"
    base.mkdir()
    base.chmod(0o1777)
    return base


def test_the_fallback_folder_is_random_private_and_remembered(
    tmp_path: Path, var_tmp: Path
) -> None:
    project = tmp_path / "project" / ".acgs"
    folder = fallback_root(project, var_tmp)
    assert folder.parent == var_tmp and folder.name.startswith("acgs-db-")
    info = folder.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o711  # postgres may enter, nobody may list or write
    pointer = project / POINTER
    assert pointer.read_text() == f"{folder}\n" and stat.S_IMODE(pointer.stat().st_mode) == 0o600
    assert fallback_root(project, var_tmp) == folder  # reused
    assert fallback_root(tmp_path / "other" / ".acgs", var_tmp) != folder  # not predictable
    folder.rmdir()  # cleaned away (a reboot, tmpreaper): a new one is made
    again = fallback_root(project, var_tmp)
    assert again != folder and again.is_dir() and pointer.read_text() == f"{again}\n"


def test_a_symlink_planted_in_place_of_the_fallback_folder_is_refused(
    tmp_path: Path, var_tmp: Path
) -> None:
    project = tmp_path / ".acgs"
    folder = fallback_root(project, var_tmp)
    folder.rmdir()
    target = tmp_path / "attacker"
    target.mkdir()
    folder.symlink_to(target)
    with pytest.raises(ConfigurationError, match="not a plain folder"):
        fallback_root(project, var_tmp)
    assert not any(target.iterdir())


@needs_root
def test_a_fallback_folder_owned_by_another_user_is_refused(tmp_path: Path, var_tmp: Path) -> None:
    project = tmp_path / ".acgs"
    folder = fallback_root(project, var_tmp)
    os.chown(folder, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(ConfigurationError, match="belongs to uid"):
        fallback_root(project, var_tmp)


def test_a_fallback_folder_others_may_write_to_is_refused(tmp_path: Path, var_tmp: Path) -> None:
    project = tmp_path / ".acgs"
    folder = fallback_root(project, var_tmp)
    folder.chmod(0o777)
    with pytest.raises(ConfigurationError, match="belongs to uid"):
        fallback_root(project, var_tmp)


def test_a_pointer_that_is_a_symlink_or_points_elsewhere_is_refused(
    tmp_path: Path, var_tmp: Path
) -> None:
    project = tmp_path / ".acgs"
    fallback_root(project, var_tmp)
    pointer = project / POINTER
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(f"{var_tmp}/acgs-db-planted\n")
    pointer.unlink()
    pointer.symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match="cannot read"):
        fallback_root(project, var_tmp)
    pointer.unlink()
    pointer.write_text("/etc\n")
    pointer.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not a folder acgs-db-"):
        fallback_root(project, var_tmp)


@needs_root
def test_under_root_a_project_closed_to_postgres_uses_a_fallback_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir(mode=0o700)  # postgres may not enter it
    cluster = DevCluster(project / ".acgs")
    try:
        assert cluster.root.parent == FALLBACK_BASE and cluster.root.name.startswith("acgs-db-")
        assert (project / ".acgs" / POINTER).read_text() == f"{cluster.root}\n"
        assert DevCluster(project / ".acgs").root == cluster.root
    finally:
        cluster.destroy()
    assert not cluster.root.exists() and not (project / ".acgs").exists()


def test_missing_binaries_name_the_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="apt-get install postgresql-15"):
        find_bindir(debian_root=tmp_path)
