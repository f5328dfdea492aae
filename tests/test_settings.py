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


# -- settings that pg_partman acts on: retention and premake --------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("13 months", "13 months"),
        ("1 year", "12 months"),
        ("2 years 6 months", "30 months"),
        ("400 days", "400 days"),
        ("31 days", "31 days"),
        ("5 weeks", "35 days"),
        ("1 month 5 days", "1 month 5 days"),
        ("  1 Mon ", "1 month"),
    ],
)
def test_a_retention_of_at_least_a_month_is_kept_canonical(value: str, canonical: str) -> None:
    assert Settings.from_env({"ACGS_RETENTION": value}).retention == canonical
    assert Settings.from_env({}, retention=value).retention == canonical
    assert Settings(retention=value).retention == canonical


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("13", "bare number"),
        ("0.5", "bare number"),
        ("13 hours", "hours, minutes and seconds are refused"),
        ("600 minutes", "hours, minutes and seconds are refused"),
        ("1 month 3 seconds", "hours, minutes and seconds are refused"),
        ("0 months", "shorter than one month"),
        ("30 days", "shorter than one month"),
        ("4 weeks", "shorter than one month"),
        ("-13 months", "negative"),
        ("1 year -1 month", "negative"),
        ("thirteen months", "whole years, months, weeks or days"),
        ("13 months; DROP TABLE x", "whole years, months, weeks or days"),
        ("200 years", "longer than 100 years"),
    ],
)
def test_a_retention_that_could_drop_data_by_accident_is_refused(value: str, reason: str) -> None:
    expected = f"ACGS_RETENTION={value!r}: .*{reason}"
    with pytest.raises(ConfigurationError, match=expected):
        Settings.from_env({"ACGS_RETENTION": value})
    with pytest.raises(ConfigurationError, match=expected):
        Settings.from_env({}, retention=value)
    with pytest.raises(ConfigurationError, match=expected):
        Settings(retention=value)


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_premake_must_be_a_whole_number_of_at_least_one(value: str) -> None:
    if value == "":  # unset: the default
        assert Settings.from_env({"ACGS_PREMAKE": value}).premake == 4
        return
    with pytest.raises(ConfigurationError, match=f"ACGS_PREMAKE={value!r}"):
        Settings.from_env({"ACGS_PREMAKE": value})


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_backlog_slices_hold_at_least_one_bucket(value: str) -> None:
    assert Settings.from_env({}).backlog_slice_buckets == 6
    assert Settings.from_env({"ACGS_BACKLOG_SLICE_BUCKETS": "48"}).backlog_slice_buckets == 48
    with pytest.raises(ConfigurationError, match=f"ACGS_BACKLOG_SLICE_BUCKETS={value!r}"):
        Settings.from_env({"ACGS_BACKLOG_SLICE_BUCKETS": value})
    with pytest.raises(ConfigurationError, match="ACGS_BACKLOG_SLICE_BUCKETS="):
        Settings(backlog_slice_buckets=0)


def test_premake_given_in_python_is_checked_too() -> None:
    assert Settings.from_env({"ACGS_PREMAKE": "2"}).premake == 2
    assert Settings(premake=1).premake == 1
    for bad in (0, -3, True, 2.0):
        with pytest.raises(ConfigurationError, match="ACGS_PREMAKE="):
            Settings(premake=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="ACGS_PREMAKE="):
            Settings.from_env({}, premake=bad)
