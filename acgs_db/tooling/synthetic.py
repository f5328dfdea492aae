"""Realistic synthetic validations for demos, loads and benchmarks.

Scores cluster near 0.97 with a tail below the 0.95 and 0.90 thresholds; processing times are
log-normal (a few milliseconds, a long tail, about 0.5 % unknown); details are ~200 bytes of
JSON. Rows come in ``created_at`` order, spread evenly over the requested days up to now, as an
append-only audit log receives them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import product

from acgs_db.records import ValidationRecord

_RULE_SETS = ("fairness-v3", "privacy-v2", "safety-v5", "transparency-v1", "accountability-v2")
_MODELS = ("gpt-policy-7", "claude-gov-3", "llama-guard-2", "mistral-audit-1")
_RISKS = ("low", "medium", "high", "critical")
_CHECKS = ("bias", "pii", "toxicity", "consent", "explainability", "jurisdiction", "retention")


def tenant_name(index: int) -> str:
    return f"tenant-{index:04d}"


def decision_name(tenant: int, decision: int) -> str:
    return f"decision-{tenant:04d}-{decision:07d}"


def decision_hash(tenant: int, decision: int) -> str:
    """The decision-cache key of a synthetic decision: SHA-256 of its id, in hex.

    ``sql/bench/fill_cache.sql`` and the pgbench scripts compute the same key in SQL.
    """
    return hashlib.sha256(decision_name(tenant, decision).encode()).hexdigest()


@dataclass(frozen=True)
class Workload:
    """Shape of a synthetic data set."""

    rows: int
    tenants: int = 100
    days: float = 30.0
    decisions: int = 1000
    """Decisions per tenant: each decision is validated rows / (tenants * decisions) times."""
    seed: int = 20261126
    null_time_rate: float = 0.005


def generate(workload: Workload, *, end: datetime | None = None) -> Iterator[ValidationRecord]:
    """Yield ``workload.rows`` records in time order, the last one near ``end`` (default now)."""
    rng = random.Random(workload.seed)
    end = end or datetime.now(UTC)
    span = timedelta(days=workload.days)
    start = end - span
    step = span / max(workload.rows, 1)
    tenants = [tenant_name(i) for i in range(workload.tenants)]
    details = [
        {
            "rule_set": rule_set,
            "model": model,
            "risk": risk,
            "checks": {check: "pass" for check in _CHECKS[: 3 + n % 5]},
            "reviewer": f"auto-{n % 7}",
            "trace_id": f"{rng.getrandbits(64):016x}",
        }
        for n, (rule_set, model, risk) in enumerate(product(_RULE_SETS, _MODELS, _RISKS))
    ]
    random_ = rng.random
    lognorm = rng.lognormvariate
    randrange = rng.randrange
    null_rate = workload.null_time_rate
    n_decisions = workload.decisions
    for i in range(workload.rows):
        t = randrange(workload.tenants)
        u = random_()
        # A mixture: most validations pass comfortably, some fail, a few are violations.
        if u < 0.85:
            score = round(0.95 + 0.05 * random_(), 4)
        elif u < 0.95:
            score = round(0.90 + 0.05 * random_(), 4)
        else:
            score = round(0.5 + 0.4 * random_(), 4)
        took = None if random_() < null_rate else int(lognorm(1.4, 0.9))
        yield ValidationRecord(
            tenant_id=tenants[t],
            decision_id=decision_name(t, randrange(n_decisions)),
            compliance_score=score,
            validation_details=details[randrange(len(details))],
            processing_time_ms=took,
            created_at=start + step * (i + 1),
        )
