"""squawk over the migrations' offline SQL: clean at head, and able to report what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from acgs_db.resources import alembic_ini

ROOT = Path(__file__).resolve().parent.parent
SQUAWK = Path(sys.executable).with_name("squawk")
CONFIG = ROOT / ".squawk.toml"


def _squawk(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SQUAWK), "--config", str(CONFIG), "--reporter", "gcc", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_squawk_reports_nothing_on_the_migrations_at_head(tmp_path: Path) -> None:
    rendered = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(alembic_ini()), "upgrade", "head", "--sql"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=ROOT,
    )
    script = tmp_path / "upgrade.sql"
    script.write_text(rendered.stdout, encoding="utf-8")
    assert "CREATE TABLE constitutional_validations" in rendered.stdout
    done = _squawk(script)
    assert done.returncode == 0, (
        "squawk reports on the migrations; fix the statement or justify it in its migration "
        "(a reason, then `-- squawk-ignore <rule>` on the line before it):\n" + done.stdout
    )


def test_squawk_reports_a_blocking_index_build_on_an_existing_table(tmp_path: Path) -> None:
    script = tmp_path / "bad.sql"
    script.write_text(
        "BEGIN;\nSET LOCAL lock_timeout = '2000ms';\n"
        "CREATE INDEX validations_score ON constitutional_validations (compliance_score);\n"
        "COMMIT;\n",
        encoding="utf-8",
    )
    done = _squawk(script)
    assert done.returncode != 0
    assert "require-concurrent-index-creation" in done.stdout
