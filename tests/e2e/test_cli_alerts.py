"""End to end: assurance cases on a real worker raise alerts that the CLI tails, lists, acknowledges and silences.

The module's worker runs with two cases: the seed's enrichment success rate
(shortened window, ``for = "0s"``) and a ``pause`` case for a mailer agent.
Outcome patterns are deterministic (exactly 9 of 10 succeed, then 6 of 10) so
that the verdicts do not depend on luck.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from reverify.schemas import encode
from reverify.streams.cli import cli
from reverify.streams.client import AgentEvents, VariantRouter

CONFIG = """
[[assurance]]
name = "enrichment_success_rate"
claim = "Enrichment success rate remains above 80%"
evidence = "success_rate"
scope = { agent_name = "enricher" }
window = "50 events"
threshold_min = 0.80
resolve_min = 0.85
for = "0s"
severity = "warning"
action = "alert"
min_evidence = 20

[[assurance]]
name = "mailer_deliverability"
claim = "The mailer keeps delivering"
evidence = "success_rate"
scope = { agent_name = "mailer" }
window = "20 events"
threshold_min = 0.80
for = "0s"
severity = "critical"
action = "pause"
min_evidence = 10

[[assurance]]
name = "booker_success"
claim = "Bookings keep succeeding"
evidence = "success_rate"
scope = { agent_name = "booker", task_type = "book" }
window = "20 events"
threshold_min = 0.80
for = "0s"
severity = "critical"
action = "rollback"
min_evidence = 10
"""


@pytest.fixture(scope="module")
def worker(worker_factory: Any) -> Any:
    return worker_factory(CONFIG)


def _outcomes(events: AgentEvents, agent: str, count: int, successes_per_10: int) -> None:
    """``count`` outcomes of which exactly ``successes_per_10`` in every 10 succeed.

    The reward stays constant so that only the assurance case reacts within these few events: the learning
    loop's own detector needs 50 settled outcomes of a variant, and its critical "degraded" alert would
    (rightly) inhibit the case's warning for the same agent.
    """
    for i in range(count):
        events.outcome(
            agent_name=agent, task_type="enrich", variant_id="v1", success=i % 10 < successes_per_10, reward=0.9
        )
    assert events.flush(30) == 0


def _is_case(alert: dict[str, Any]) -> bool:
    return alert.get("labels", {}).get("case") == "enrichment_success_rate"


def test_enricher_alert_fires_once_is_tailed_listed_acked_silenced_and_resolves(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    alerts, commands = e2e.Follower(settings, "alerts"), e2e.Follower(settings, "control.commands")
    tail = e2e.spawn(settings, [e2e.REVERIFY, "alerts", "tail", "--json", "--from-beginning"])
    lines = e2e.LineReader(tail)
    try:
        with AgentEvents(settings=settings) as events:
            _outcomes(events, "enricher", 30, 9)  # 0.9: passes
            _outcomes(events, "enricher", 30, 6)  # 0.6: the 50-event window falls to 0.72, below 0.80
            _, firing = alerts.wait(lambda a: _is_case(a) and a["status"] == "firing")
            fp = firing["fingerprint"]
            assert firing["severity"] == "warning" and firing["labels"]["agent_name"] == "enricher"
            assert firing["evidence"]["value"] < 0.80 and firing["evidence"]["threshold"] == 0.80

            # Another process following the topic prints it, one JSON object per line.
            _, line = lines.wait(lambda text: json.loads(text)["fingerprint"] == fp, timeout=30)
            assert json.loads(line)["status"] == "firing"

            listed = e2e.run_cli(settings, "alerts", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            assert [a["fingerprint"] for a in json.loads(listed.stdout) if _is_case(a)] == [fp]

            acked = e2e.run_cli(settings, "alerts", "ack", fp, "--by", "alice")
            assert acked.returncode == 0, acked.stderr
            _, ack = commands.wait(lambda c: c["command"] == "ack")
            assert (ack["args"], ack["by"]) == ({"fingerprint": fp}, "alice")
            # The alert manager re-emits the firing alert with who took it.
            alerts.wait(lambda a: a["fingerprint"] == fp and a["acknowledged_by"] == "alice")

            silenced = e2e.run_cli(
                settings, "alerts", "silence", "--match", "agent_name=enricher", "--for", "2h", "--by", "bob",
                "--comment", "enrichment API migration", "--json",
            )  # fmt: skip
            assert silenced.returncode == 0, silenced.stderr
            [published] = json.loads(silenced.stdout)
            assert json.loads(published["args"]["matchers"]) == {"agent_name": "enricher"}
            assert abs(int(published["args"]["until_ms"]) - (time.time() * 1000 + 7_200_000)) < 60_000
            commands.wait(lambda c: c["command"] == "silence" and c["event_id"] == published["event_id"])

            _outcomes(events, "enricher", 60, 10)  # recovery: back above resolve_min 0.85
            _, resolved = alerts.wait(lambda a: a["fingerprint"] == fp and a["status"] == "resolved")
            assert resolved["ends_at"] is not None

        mine = [(a["status"], a["acknowledged_by"]) for _, a in alerts.matching(lambda a: a["fingerprint"] == fp)]
        # Fired once, updated once by the ack (no new notification episode), resolved once.
        assert mine == [("firing", None), ("firing", "alice"), ("resolved", "alice")]
        lines.wait(lambda text: json.loads(text)["fingerprint"] == fp and json.loads(text)["status"] == "resolved")

        listed = e2e.run_cli(settings, "alerts", "list", "--json")
        assert fp not in [a["fingerprint"] for a in json.loads(listed.stdout)]

        # Ctrl-C ends the tail quietly.
        code, stderr = e2e.stop(tail, signal.SIGINT)
        assert code == 0 and "Traceback" not in stderr, stderr
    finally:
        e2e.stop(tail)
        alerts.close()
        commands.close()


def test_silence_without_agent_goes_to_every_known_agent(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agents = [f"sx-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    active = e2e.Follower(settings, "crl.active")
    try:
        with AgentEvents(settings=settings) as events:
            for agent in agents:
                _outcomes(events, agent, 1, 10)
        for agent in agents:
            active.wait(lambda r, a=agent: r["agent_name"] == a)
        done = e2e.run_cli(
            settings, "alerts", "silence", "--match", "source=drift", "--match", "severity=warning",
            "--for", "30m", "--by", "carol", "--comment", "noisy", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        published = json.loads(done.stdout)
        assert len({c["args"]["silence_id"] for c in published}) == 1  # one silence, heard by every pipeline
        assert all(json.loads(c["args"]["matchers"]) == {"source": "drift", "severity": "warning"} for c in published)
        known = {r["agent_name"] for _, r in active.matching(lambda r: True)}
        assert len(published) == len(known) and set(agents) <= known
    finally:
        active.close()


def test_pause_action_reaches_a_router_in_another_process(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    probe, lines = e2e.router_probe(settings, "mailer", "send")
    try:
        lines.wait(lambda line: line.split()[2] == "False")
        with AgentEvents(settings=settings) as events:
            _outcomes(events, "mailer", 20, 10)
            _outcomes(events, "mailer", 20, 0)  # every send fails: the case fails and pauses the mailer
        _, line = lines.wait(lambda line: line.split()[2] == "True", timeout=30)
        assert line.split()[3] == "0"  # a pause is not a degradation level
    finally:
        e2e.stop(probe)


def test_rollback_action_rolls_the_active_variant_back_through_the_learning_loop(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    rollbacks = e2e.Follower(settings, "control.rollbacks")
    try:
        with AgentEvents(settings=settings) as events:
            # v1 is seen first (active); v2 has enough evidence (n >= 5) to be the target but a low Q, so the
            # learning loop never promotes it by itself; then v1 fails, too few times for its own detector.
            for _ in range(10):
                events.outcome(agent_name="booker", task_type="book", variant_id="v1", success=True, reward=0.9)
            for _ in range(8):
                events.outcome(agent_name="booker", task_type="book", variant_id="v2", success=True, reward=0.5)
            for _ in range(20):
                events.outcome(agent_name="booker", task_type="book", variant_id="v1", success=False, reward=0.0)
            assert events.flush(30) == 0
        _, rollback = rollbacks.wait(lambda r: r["agent_name"] == "booker", timeout=60)
        assert (rollback["from_variant"], rollback["to_variant"]) == ("v1", "v2")
        assert rollback["trigger"] == "assurance:booker_success"
        assert "booker_success" in rollback["reason"]
        assert rollback["rollback_id"].startswith("rb-")
    finally:
        rollbacks.close()


def test_router_takes_pause_from_pause_records_and_the_highest_level_of_any_source(worker: Any, e2e: Any) -> None:
    """AgentControl records from the error monitor and the assurance cases, as those processors word them."""
    from confluent_kafka import Producer

    settings = worker.settings
    agent = f"ctl-{uuid.uuid4().hex[:6]}"
    producer = Producer(settings.kafka_config(**{"partitioner": "murmur2_random"}))

    def control(kind: str, paused: bool, level: int, reason: str) -> None:
        record = {
            "event_id": str(uuid.uuid4()),
            "ts": int(time.time() * 1000),
            "agent_name": agent,
            "kind": kind,
            "paused": paused,
            "degradation_level": level,
            "component": "clay_api" if kind == "circuit" else None,
            "circuit_state": "open" if kind == "circuit" else None,
            "reason": reason,
            "cause_id": None,
        }
        producer.produce(settings.topic("control.agents"), encode("AgentControl", record), agent.encode())
        producer.flush(10)

    with VariantRouter(settings=settings) as router:

        def settled(predicate: Any) -> None:
            deadline = time.monotonic() + 30
            while not predicate():
                assert time.monotonic() < deadline, (router.is_paused(agent), router.degradation_level(agent))
                time.sleep(0.05)

        control("pause", True, 0, "assurance case mailer_deliverability failed for 0 ms: 0.0 < 0.8")
        settled(lambda: router.is_paused(agent))
        control("circuit", False, 2, "errors: circuit clay_api open")  # says nothing about pausing
        control("degrade", False, 2, "errors: reduced (clay_api failing)")
        settled(lambda: router.degradation_level(agent) == 2)
        assert router.is_paused(agent)
        control("degrade", True, 1, "assurance case slow failed for 0 ms: 3000 > 2000")
        time.sleep(1.0)
        assert router.degradation_level(agent) == 2  # the error monitor still asks for 2
        control("degrade", False, 0, "errors: full service")
        settled(lambda: router.degradation_level(agent) == 1)  # now the assurance case's 1 is the highest
        control("resume", False, 1, "assurance case mailer_deliverability passes again")
        settled(lambda: not router.is_paused(agent))
        assert router.degradation_level(agent) == 1


def test_bad_duration_and_matcher_are_one_line_exit_2() -> None:
    runner = CliRunner()
    for args, needle in (
        (["--for", "2 fortnights"], "--for '2 fortnights' is not allowed"),
        (["--for", "0s"], "use a duration > 0"),
    ):
        result = runner.invoke(
            cli, ["alerts", "silence", "--match", "agent_name=x", *args, "--by", "a", "--comment", "c"]
        )
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().count("\n") == 0 and needle in result.stderr
        assert "Traceback" not in result.output
    result = runner.invoke(
        cli, ["alerts", "silence", "--match", "agent_name", "--for", "1h", "--by", "a", "--comment", "c"]
    )
    assert result.exit_code == 2 and "is not LABEL=VALUE" in result.stderr
