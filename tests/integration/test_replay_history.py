"""``reverify replay --from-clickhouse``: the stored inputs, in event-time order, through the worker's rules."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from reverify.sinks.clickhouse import close_embedded, connect
from reverify.sinks.migrate import migrate

REVERIFY = str(Path(sys.executable).with_name("reverify"))
COLUMNS = [
    "event_id", "ts", "agent_name", "task_type", "variant_id", "success", "reward", "latency_ms", "cost_usd",
    "tokens_in", "tokens_out", "features", "attributes", "trace_id", "next_state", "kafka_partition", "kafka_offset",
]  # fmt: skip


def outcome_rows(agent: str, start_ms: int, n: int, seed: int) -> list[list[Any]]:
    """``n`` stored outcomes, 100 ms apart, v0 (the first active) collapsing at the middle; stored out of order."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        variant = f"v{i % 2}"
        success = rng.random() < (0.3 if variant == "v0" and i >= n // 2 else 0.95)
        ts = dt.datetime.fromtimestamp((start_ms + 100 * i) / 1000, dt.timezone.utc)
        rows.append([f"{agent}-{i}", ts, agent, "t", variant, success, float(success), 1.0, 0.0, None, None, {}, {},
                     None, None, 0, i])  # fmt: skip
    rng.shuffle(rows)
    return rows


def test_the_stored_history_replays_in_event_time_order_filtered_by_agent_and_age(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path / 'ch'}"
    hour_ago = int(time.time() * 1000) - 3_600_000
    client = connect(url)
    try:
        migrate(client)
        client.insert("agent_outcomes", outcome_rows("ann", hour_ago, 3000, seed=3), column_names=COLUMNS)
        client.insert("agent_outcomes", outcome_rows("bob", hour_ago, 500, seed=4), column_names=COLUMNS)
        client.insert(
            "agent_outcomes", outcome_rows("ann", hour_ago - 30 * 86_400_000, 100, seed=5), column_names=COLUMNS
        )
    finally:
        client.close()
        close_embedded()  # the command opens the database itself
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIFY_")}
    env.update({"REVERIFY_CLICKHOUSE": url, "REVERIFY_DATA_DIR": str(tmp_path)})
    command = [REVERIFY, "replay", "--from-clickhouse", "--since", "1d", "--agent", "ann", "--json"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["agent_name"] for r in records if "agent_name" in r} == {"ann"}
    latest = {q["variant_id"]: q["n"] for q in records if q["record_type"] == "QValue"}
    assert sum(latest.values()) == 3000  # the last hour's, not the month-old 100
    rollbacks = [r for r in records if r["record_type"] == "Rollback"]
    assert [(r["from_variant"], r["to_variant"]) for r in rollbacks] == [("v0", "v1")]
    assert hour_ago + 100 * 1500 < rollbacks[0]["ts"] < hour_ago + 100 * 2000  # replayed in ts order, not stored order
