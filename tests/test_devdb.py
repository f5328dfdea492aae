"""The embedded development cluster: initdb, start, status, URL, stop, with the extensions."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from acgs_db.devdb import DevCluster, find_bindir
from acgs_db.errors import ConfigurationError


@pytest.fixture
def dev_root(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path / "acgs"


def test_start_status_url_stop(dev_root: Path) -> None:
    cluster = DevCluster(dev_root)
    assert cluster.status().initialized is False
    try:
        url = cluster.start()
        status = cluster.status()
        assert status.running and status.url == url
        assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/acgs")
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
        expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
        assert server_uid == expected
        assert cluster.start() == url  # idempotent
        cluster.stop()
        assert cluster.status().running is False
        assert cluster.start() == url  # the port is kept across restarts
    finally:
        cluster.destroy()
    assert not dev_root.exists()


def test_cli_uses_the_folder_from_the_environment(dev_root: Path) -> None:
    env = {**os.environ, "ACGS_DEV_DIR": str(dev_root)}
    env.pop("ACGS_DATABASE_URL", None)
    cli = [sys.executable, "-m", "acgs_db"]
    try:
        url = subprocess.run(
            [*cli, "dev-db", "url"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        assert url.startswith("postgresql://")
        status = subprocess.run(
            [*cli, "dev-db", "status"], env=env, check=True, capture_output=True, text=True
        ).stdout
        assert status.startswith("running") and url in status
        subprocess.run([*cli, "dev-db", "stop"], env=env, check=True)
        status = subprocess.run(
            [*cli, "dev-db", "status"], env=env, check=True, capture_output=True, text=True
        ).stdout
        assert status.startswith("stopped")
    finally:
        DevCluster(dev_root).destroy()


def test_missing_binaries_name_the_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="apt-get install postgresql-15"):
        find_bindir(debian_root=tmp_path)
