"""Settings come from ACGS_* variables, with the seed's figures as defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from acgs_db.errors import ConfigurationError
from acgs_db.settings import Settings


def test_defaults_follow_the_seed() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert (s.pool_min_size, s.pool_max_size, s.command_timeout) == (10, 50, 5.0)
    assert s.application_name == "acgs_constitutional_service"
    assert s.max_clock_skew == timedelta(minutes=5)
    assert s.staleness == timedelta(seconds=600)


def test_environment_overrides_each_setting() -> None:
    s = Settings.from_env(
        {
            "ACGS_DATABASE_URL": "postgresql://u@h/db",
            "ACGS_POOL_MAX_SIZE": "7",
            "ACGS_STATEMENT_CACHE_SIZE": "0",
            "ACGS_MAX_CLOCK_SKEW": "30",
            "ACGS_REFRESH_INTERVAL": "60",
            "ACGS_DEV_DIR": "/tmp/x",
            "ACGS_SCHEMA": "audit",
        }
    )
    assert s.database_url == "postgresql://u@h/db"
    assert s.pool_max_size == 7
    assert s.statement_cache_size == 0
    assert s.max_clock_skew == timedelta(seconds=30)
    assert s.staleness == timedelta(seconds=120)
    assert s.dev_root == Path("/tmp/x")
    assert s.schema == "audit"


def test_keyword_overrides_win_over_the_environment() -> None:
    s = Settings.from_env({"ACGS_POOL_MAX_SIZE": "7"}, pool_max_size=3)
    assert s.pool_max_size == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [("ACGS_POOL_MAX_SIZE", "many"), ("ACGS_SCHEMA", "x; DROP TABLE y"), ("ACGS_SCHEMA", "A")],
)
def test_malformed_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})
