"""End to end: an SLO on a real worker pages when an agent burns its error budget, and not when it keeps it;
``reverify replay`` of the same inputs emits the same SloReports and SLO alerts.

One SLO, objective 0.99 over 30 days, a budget per agent. Two agents publish 400 outcomes each over the last
ten minutes of event time: exactly 9 of 10 succeed for one (a burn rate of 10: above the 6x page rule and
both ticket rules), 199 of 200 for the other (0.995: a burn rate of 0.5 once its first failure comes).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from reverify.streams.cli import cli
from reverify.streams.client import AgentEvents

from tests.e2e.test_replay import emitted, run_replay, write_lines

CONFIG = """
[[slo]]
name = "outcomes_succeed"
sli = "success_rate"
objective = 0.99
window = "30d"
"""


def _lines(agent: str, start_ms: int, fails_every: int, offset: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": "outcome",
            "agent_name": agent,
            "task_type": "t",
            "variant_id": "v1",
            "reward": 0.9,
            "success": i % fails_every != offset,
            "ts": start_ms + i * 1500,
            "event_id": f"{agent}-{i}",
        }  # fmt: skip
        for i in range(400)
    ]


def test_budget_burn_pages_a_keeper_does_not_and_replay_emits_the_same(
    worker_factory: Any, e2e: Any, tmp_path: Path
) -> None:
    worker = worker_factory(CONFIG)
    settings = worker.settings
    burner, keeper = f"burner-{uuid.uuid4().hex[:6]}", f"keeper-{uuid.uuid4().hex[:6]}"
    start = (int(time.time() * 1000) - 600_000) // 1000 * 1000
    lines = sorted(_lines(burner, start, 10, 0) + _lines(keeper, start, 200, 199), key=lambda x: x["ts"])
    alerts, reports = e2e.Follower(settings, "alerts"), e2e.Follower(settings, "slo.reports")
    with AgentEvents(settings=settings) as sdk:
        for line in lines:
            sdk.outcome(**{k: v for k, v in line.items() if k != "kind"})
        assert sdk.flush(30) == 0

    last_ts = lines[-1]["ts"]
    last_evaluation = last_ts // 60_000 * 60_000
    for agent in (burner, keeper):  # both agents evaluated up to their last minute boundary
        reports.wait(lambda r, a=agent: r["agent_name"] == a and r["ts"] >= last_evaluation, timeout=60)
    alerts.poll(1.0)
    slo_alerts = [r for _t, _type, r in alerts.seen if r["source"] == "slo"]
    burning = [a for a in slo_alerts if a["labels"]["agent_name"] == burner and a["status"] == "firing"]
    assert {a["labels"]["alert"]: a["severity"] for a in burning} == {"page": "critical", "ticket": "warning"}
    assert all(a["labels"]["slo"] == "outcomes_succeed" for a in burning)
    assert not [a for a in slo_alerts if a["labels"]["agent_name"] == keeper]
    mine = [r for _t, _type, r in reports.seen if r["agent_name"] in (burner, keeper) and r["ts"] <= last_ts]
    latest = {r["agent_name"]: r for r in sorted(mine, key=lambda r: r["ts"])}
    assert latest[burner]["alerting"] == "page" and latest[keeper]["alerting"] == "none"
    assert latest[keeper]["error_budget_remaining"] > 0 > latest[burner]["error_budget_remaining"]

    config = tmp_path / "reverify.toml"
    config.write_text(CONFIG)
    done = run_replay(tmp_path, str(write_lines(tmp_path / "in.jsonl", lines)), "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    replayed = emitted(done.stdout)

    def same(records: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(r, sort_keys=True) for r in records)

    want_reports = [
        {k: v for k, v in r.items() if k != "record_type"} for r in replayed if r["record_type"] == "SloReport"
    ]
    assert same(want_reports) == same(mine)
    want_alerts = [
        (r["event_id"], r["status"]) for r in replayed if r["record_type"] == "Alert" and r["source"] == "slo"
    ]
    assert sorted(want_alerts) == sorted((a["event_id"], a["status"]) for a in slo_alerts if a["ts"] <= last_ts)
    alerts.close()
    reports.close()


def test_slo_check_lists_valid_slos_and_names_each_mistake(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good.toml"
    good.write_text(CONFIG)
    ok = runner.invoke(cli, ["slo", "check", str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    [slo] = json.loads(ok.stdout)
    assert (slo["name"], slo["objective"], slo["burn_rules"][0]) == ("outcomes_succeed", 0.99, "page 14.4 1h 5m")

    bad = tmp_path / "bad.toml"
    bad.write_text('[[slo]]\nname = "x"\nsli = "sucess_rate"\nobjective = 99\n\n[slo_alerting]\nmin_events = -1\n')
    result = runner.invoke(cli, ["slo", "check", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert [line.split(": field")[0] for line in result.stderr.strip().splitlines()] == [
        "error: [slo_alerting]: min_events = -1 is not allowed; use a whole number >= 0",
        "error: slo x",
        "error: slo x",
    ]
    missing = runner.invoke(cli, ["slo", "check", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    lines = write_lines(tmp_path / "in.jsonl", _lines("a", 0, 10, 0))
    replayed = run_replay(tmp_path, str(lines), "--config", str(bad))  # a replay reads SLOs as a worker does
    assert replayed.returncode == 2 and replayed.stderr.startswith("error: [slo_alerting]"), replayed.stderr
