"""End to end: the learning loop with a real worker, and the operator commands that steer it.

One worker (its own topic prefix) serves the whole module; every test uses its
own agent names. Events go in through the SDK, the CLI runs as a subprocess,
and results are read back from the topics.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from reverify.streams.cli import cli
from reverify.streams.client import AgentEvents

TASK = "search"


@pytest.fixture(scope="module")
def worker(worker_factory: Any) -> Any:
    return worker_factory()


def _uid() -> str:
    return uuid.uuid4().hex[:6]


def _invocations(events: AgentEvents, agent: str, start: int, count: int, p: dict[str, float], rng: random.Random):
    """``count`` alternating invocations (v2 first), success with probability ``p[variant]``, reward 1 or 0."""
    base = int(time.time() * 1000)
    for i in range(start, start + count):
        variant = "v2" if i % 2 == 0 else "v1"
        success = rng.random() < p[variant]
        events.outcome(
            agent_name=agent,
            task_type=TASK,
            variant_id=variant,
            success=success,
            reward=1.0 if success else 0.0,
            ts=base + i,  # increasing event time
        )


def test_degraded_variant_is_rolled_back_and_another_process_follows(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agent = f"lp-{_uid()}"
    rng = random.Random(3)
    active, rollbacks, decisions = (
        e2e.Follower(settings, t) for t in ("crl.active", "control.rollbacks", "crl.decisions")
    )
    probe, lines = e2e.router_probe(settings, agent, TASK)
    try:
        with AgentEvents(settings=settings) as events:
            _invocations(events, agent, 0, 200, {"v1": 0.95, "v2": 0.80}, rng)
            assert events.flush(30) == 0
            decisions.wait(
                lambda r: r["agent_name"] == agent and r["variant_id"] == "v1" and r["decision"] == "auto_apply"
            )
            active.wait(lambda r: r["agent_name"] == agent and r["variant_id"] == "v1" and r["reason"] == "auto_apply")
            lines.wait(lambda line: line.split()[1] == "v1", timeout=30)  # the router has caught up

            _invocations(events, agent, 200, 300, {"v1": 0.50, "v2": 0.80}, rng)
            assert events.flush(30) == 0
        logged_at, rollback = rollbacks.wait(lambda r: r["agent_name"] == agent, timeout=60)
        assert (rollback["from_variant"], rollback["to_variant"]) == ("v1", "v2")
        assert re.fullmatch(r"rb-\d{8}-[0-9a-f]{6}", rollback["rollback_id"])
        assert rollback["statistic"] > rollback["threshold"]
        active.wait(lambda r: r["agent_name"] == agent and r["variant_id"] == "v2" and r["reason"] == "rollback")
        switched_at, _ = lines.wait(lambda line: line.split()[1] == "v2", timeout=10)
        assert switched_at - logged_at <= 1.0, f"router switched {switched_at - logged_at:.2f}s after the rollback"
        assert len(rollbacks.matching(lambda r: r["agent_name"] == agent)) == 1
    finally:
        e2e.stop(probe)
        for f in (active, rollbacks, decisions):
            f.close()


def test_stationary_stream_is_never_rolled_back(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agents = [f"st{seed}-{_uid()}" for seed in (11, 12, 13)]
    with AgentEvents(settings=settings) as events:
        for seed, agent in zip((11, 12, 13), agents, strict=True):
            _invocations(events, agent, 0, 500, {"v1": 0.95, "v2": 0.80}, random.Random(seed))
        assert events.flush(30) == 0
    qvalues, rollbacks, active = (e2e.Follower(settings, t) for t in ("crl.qvalues", "control.rollbacks", "crl.active"))
    try:
        for agent in agents:  # every invocation applied: both arms reached n = 250
            for variant in ("v1", "v2"):
                qvalues.wait(lambda r, a=agent, v=variant: (r["agent_name"], r["variant_id"], r["n"]) == (a, v, 250))
            active.wait(lambda r, a=agent: r["agent_name"] == a and r["variant_id"] == "v1")
        rollbacks.poll(1.0)
        assert rollbacks.matching(lambda r: r["agent_name"] in agents) == []
    finally:
        for f in (qvalues, rollbacks, active):
            f.close()


def _propose(events: AgentEvents, agent: str) -> None:
    """v1 active (first seen, perfect); v2 steady at reward 0.8: Q 0.8 -> human_approval once n >= 5."""
    base = int(time.time() * 1000)
    for i in range(16):
        variant = "v1" if i % 2 == 0 else "v2"
        events.outcome(
            agent_name=agent,
            task_type=TASK,
            variant_id=variant,
            success=True,
            reward=1.0 if variant == "v1" else 0.8,
            ts=base + i,
        )


def test_approve_makes_the_proposed_variant_active_and_reject_does_not(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    approved_agent, rejected_agent = f"ap-{_uid()}", f"rj-{_uid()}"
    proposals, active, approvals = (
        e2e.Follower(settings, t) for t in ("crl.proposals", "crl.active", "control.approvals")
    )
    try:
        with AgentEvents(settings=settings) as events:
            _propose(events, approved_agent)
            _propose(events, rejected_agent)
            assert events.flush(30) == 0
        _, to_approve = proposals.wait(lambda r: r["agent_name"] == approved_agent)
        _, to_reject = proposals.wait(lambda r: r["agent_name"] == rejected_agent)
        assert to_approve["variant_id"] == "v2" and 0.7 <= to_approve["confidence"] < 0.9

        done = e2e.run_cli(settings, "reject", to_reject["proposal_id"], "--by", "bob", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["approved"] is False
        done = e2e.run_cli(settings, "approve", to_approve["proposal_id"], "--by", "alice", "--comment", "looks good")
        assert done.returncode == 0, done.stderr
        assert to_approve["proposal_id"] in done.stdout

        _, record = approvals.wait(lambda r: r["proposal_id"] == to_approve["proposal_id"])
        assert (record["agent_name"], record["task_type"], record["variant_id"]) == (approved_agent, TASK, "v2")
        assert (record["approved"], record["by"], record["comment"]) == (True, "alice", "looks good")
        _, switched = active.wait(lambda r: r["agent_name"] == approved_agent and r["reason"] == "approval")
        assert (switched["variant_id"], switched["cause_id"]) == ("v2", to_approve["proposal_id"])

        approvals.wait(lambda r: r["proposal_id"] == to_reject["proposal_id"] and r["approved"] is False)
        time.sleep(2.0)  # the rejection went first on the same topic; give the worker time to (not) act on it
        active.poll(1.0)
        assert [r["variant_id"] for _, r in active.matching(lambda r: r["agent_name"] == rejected_agent)] == ["v1"]
    finally:
        for f in (proposals, active, approvals):
            f.close()


def test_baseline_pin_reads_the_live_stream_and_reset_publishes(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agent = f"bl-{_uid()}"
    with AgentEvents(settings=settings) as events:
        for i in range(150):
            events.outcome(
                agent_name=agent,
                task_type=TASK,
                variant_id="v1",
                success=True,
                reward=0.5,
                features={"intent_score": float(i)},
            )
        assert events.flush(30) == 0
    commands = e2e.Follower(settings, "control.commands")
    try:
        done = e2e.run_cli(
            settings, "baseline", "pin", "--agent", agent, "--feature", "intent_score", "--from", "-5m", "--to", "now"
        )
        assert done.returncode == 0, done.stderr
        assert "150 values" in done.stdout
        _, pin = commands.wait(lambda r: r["command"] == "baseline_pin" and r["args"]["feature"] == "intent_score")
        assert sorted(json.loads(pin["args"]["values"])) == [float(i) for i in range(150)]

        too_few = e2e.run_cli(
            settings, "baseline", "pin", "--agent", agent, "--feature", "intent_score", "--from", "-2h", "--to", "-1h"
        )
        assert too_few.returncode == 2
        assert too_few.stderr.strip().count("\n") == 0 and "only 0 values" in too_few.stderr
        assert "Traceback" not in too_few.stderr + too_few.stdout

        done = e2e.run_cli(settings, "baseline", "reset", "--agent", agent, "--feature", "reward", "--variant", "v1")
        assert done.returncode == 0, done.stderr
        _, reset = commands.wait(lambda r: r["command"] == "baseline_reset")
        assert reset["args"] == {"feature": "reward", "variant_id": "v1"}
    finally:
        commands.close()


def test_status_reports_broker_topics_worker_and_lag(worker: Any, e2e: Any) -> None:
    done = e2e.run_cli(worker.settings, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["broker"]["reachable"] is True
    assert status["worker"]["ready"] is True
    assert all(t["present"] for t in status["topics"])
    assert {r["topic"] for r in status["lag"]} == {
        worker.settings.topic(t)
        for t in (
            "agent.outcomes",
            "agent.errors",
            "agent.metrics",
            "agent.feedback",
            "control.approvals",
            "control.commands",
        )
    }
    assert all(r["lag"] >= 0 for r in status["lag"])
    human = e2e.run_cli(worker.settings, "status")
    assert human.returncode == 0 and "worker ready" in human.stdout


def _one_line_error(result_stderr: str, result_stdout: str, needle: str) -> None:
    text = result_stderr.strip()
    assert text.count("\n") == 0, text
    assert needle in text and text.startswith("error:")
    assert "Traceback" not in result_stderr + result_stdout


def test_unknown_proposal_is_one_line_exit_2(worker: Any, e2e: Any) -> None:
    done = e2e.run_cli(worker.settings, "approve", "prop-20250101-nope00")
    assert done.returncode == 2
    _one_line_error(done.stderr, done.stdout, "no proposal prop-20250101-nope00")


def test_assurance_check(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "streams" / "assurance.example.toml"
    runner = CliRunner()
    ok = runner.invoke(cli, ["assurance", "check", str(example), "--json"])
    assert ok.exit_code == 0, ok.output
    assert [c["name"] for c in json.loads(ok.stdout)][:2] == ["email_deliverability", "enrichment_success_rate"]

    bad = tmp_path / "bad.toml"
    bad.write_text('[[assurance]]\nname = "x"\nevidence = "succes_rate"\nthreshold_min = 0.8\n')
    result = runner.invoke(cli, ["assurance", "check", str(bad)])
    assert result.exit_code == 2
    _one_line_error(result.stderr, result.stdout, "case x: field evidence")

    worse = tmp_path / "worse.toml"
    worse.write_text('[[assurance]]\nname = "y"\nevidence = "success_rate"\nwindow = "5 fortnights"\nfor = "soon"\n')
    result = runner.invoke(cli, ["assurance", "check", str(worse)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["case y"] * 3  # window, threshold, for: each named

    missing = runner.invoke(cli, ["assurance", "check", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
