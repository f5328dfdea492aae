"""Operator commands: refresh, refresher, schedule (pg_cron), maintain (pg_partman)."""

from __future__ import annotations
