"""Versioned DDL: ``sinks/migrations/NNN_name.sql`` applied in order, recorded in ``schema_migrations``.

Every statement in a migration is idempotent (``IF NOT EXISTS``), so a
migration interrupted half-way is simply applied again; its version is
recorded only after its last statement succeeded. A database whose recorded
version is newer than the newest file here belongs to a newer reverify, and
:func:`migrate` refuses to touch it rather than write rows its tables may no
longer accept.

>>> [m.version for m in load_migrations()][:2]
[1, 2]
>>> split_statements("CREATE TABLE a (x Int8) ENGINE=Memory;\\n-- note; with a semicolon\\nSELECT 1;")
['CREATE TABLE a (x Int8) ENGINE=Memory', 'SELECT 1']
>>> ttl_clause(365)
'TTL toDateTime(ts) + toIntervalDay(365)'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

#: The event tables, one per topic: logical topic name -> table name.
TABLES: dict[str, str] = {
    "agent.outcomes": "agent_outcomes",
    "agent.errors": "agent_errors",
    "agent.metrics": "agent_metrics",
    "agent.feedback": "agent_feedback",
    "crl.qvalues": "crl_qvalues",
    "crl.decisions": "crl_decisions",
    "crl.active": "crl_active",
    "crl.proposals": "crl_proposals",
    "control.approvals": "control_approvals",
    "control.rollbacks": "control_rollbacks",
    "control.agents": "control_agents",
    "control.commands": "control_commands",
    "drift.reports": "drift_reports",
    "model.reports": "model_reports",
    "assurance.results": "assurance_results",
    "alerts": "alerts",
    "crl.incidents": "crl_incidents",
    "slo.reports": "slo_reports",
    "reverify.deadletter": "reverify_deadletter",
    "crl.experiments": "crl_experiments",
}


class MigrationError(RuntimeError):
    """The database cannot be brought to this code's schema (for instance, it is newer)."""


@dataclass(frozen=True)
class Migration:
    """One file of versioned DDL."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations shipped with this code, in version order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version in {directory}")
    return found


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: ``--`` comment lines dropped, split at a ``;`` that ends a line."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]


def ttl_clause(days: int | None) -> str:
    """The TTL expression for keeping ``days`` of history by event time (empty when kept forever)."""
    return f"TTL toDateTime(ts) + toIntervalDay({int(days)})" if days else ""


def _ensure_table(client: Client) -> None:
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree ORDER BY version"
    )


def current_version(client: Client) -> int:
    """The highest migration version recorded in the database (0 for a fresh one)."""
    _ensure_table(client)
    return int(client.query("SELECT max(version) FROM schema_migrations").result_rows[0][0] or 0)


def migrate(client: Client, ttl_days: int | Mapping[str, int | None] | None = None) -> list[int]:
    """Apply the pending migrations in order; returns the versions applied (empty when up to date).

    Parameters
    ----------
    client : Client
        A clickhouse-connect client on the target database.
    ttl_days : int or mapping, optional
        History to keep, by event time: one number for every event table, or
        ``{table: days}`` (tables not named keep rows forever); ``None`` / ``0``
        keeps rows forever. Applied on every
        run, so changing the setting changes the tables.

    Raises
    ------
    MigrationError
        When the database records a version newer than the newest migration here.
    """
    migrations = load_migrations()
    newest = migrations[-1].version if migrations else 0
    have = current_version(client)
    if have > newest:
        raise MigrationError(
            f"the ClickHouse schema is at version {have}, newer than this reverify knows ({newest}); "
            "upgrade reverify instead of migrating down"
        )
    # Every file not recorded yet, not only those above the highest recorded: migration numbers are handed out
    # ahead of time, so a lower number may land after a higher one was applied.
    recorded = {int(v) for (v,) in client.query("SELECT DISTINCT version FROM schema_migrations").result_rows}
    applied = []
    for migration in migrations:
        if migration.version in recorded:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(migration.version)
    apply_ttl(client, ttl_days)
    return applied


def apply_ttl(client: Client, ttl_days: int | Mapping[str, int | None] | None) -> None:
    """Set (or remove) the TTL of each event table; tables already right are not touched."""
    wanted = {t: (ttl_days.get(t) if isinstance(ttl_days, Mapping) else ttl_days) for t in TABLES.values()}
    if isinstance(ttl_days, Mapping):
        unknown = set(ttl_days) - set(TABLES.values())
        if unknown:
            raise MigrationError(f"ttl for unknown tables: {', '.join(sorted(unknown))}")
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": list(wanted)},
    ).result_rows
    for name, engine_full in rows:
        days = wanted[name]
        has_ttl = " TTL " in f" {engine_full} "
        if days:
            expected = f"toIntervalDay({int(days)})"
            if not has_ttl or expected not in engine_full:
                client.command(f"ALTER TABLE {name} MODIFY {ttl_clause(days)}")
        elif has_ttl:
            client.command(f"ALTER TABLE {name} REMOVE TTL")
