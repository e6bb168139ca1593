"""SLOs and error budgets: declarations, the SRE workbook's burn-rate examples, bounded state, alerts, round trip."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from reverify.processors.alerting import AlertManager
from reverify.processors.base import Emission
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.processors.slo import (
    BucketedCounts,
    SloConfigError,
    SloEvaluator,
    SloSettings,
    budget,
    burn_rate,
    detection_ms,
    parse_burn_rule,
    parse_slos,
)
from reverify.schemas import decode, encode
from reverify.streams.settings import Settings

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T0 = 1_760_000_000_000 // DAY * DAY  # a midnight, so bucket edges fall on round times


def slo(objective: float = 0.999, sli: str = "success_rate", **extra: Any) -> Any:
    return parse_slos([{"name": "s", "sli": sli, "objective": objective, "window": "30d", **extra}])[0]


def outcome(ts: int, success: bool, agent: str = "a", task: str = "t", latency: float | None = 100.0) -> dict:
    return {"ts": ts, "agent_name": agent, "task_type": task, "success": success, "latency_ms": latency}


def alerts(out: list[Emission]) -> list[dict[str, Any]]:
    return [e.value for e in out if e.record_type == "Alert"]


def reports(out: list[Emission]) -> list[dict[str, Any]]:
    return [e.value for e in out if e.record_type == "SloReport"]


# ---------------------------------------------------------------------------------------------- the workbook


@pytest.mark.parametrize(
    ("rule", "spent"),
    [("page 14.4 1h 5m", 0.02), ("page 6 6h 30m", 0.05), ("ticket 3 1d 2h", 0.10), ("ticket 1 3d 6h", 0.10)],
)
def test_each_default_rule_fires_at_the_budget_share_the_workbook_gives(rule: str, spent: float) -> None:
    assert parse_burn_rule(rule).budget_spent(30 * DAY) == pytest.approx(spent)


def test_an_hour_at_14_4x_consumes_2_percent_of_a_30_day_budget() -> None:
    """99.9 % over 30 days at a steady 1,000 events a minute; one hour burns at 14.4x (1.44 % errors)."""
    counts = BucketedCounts(MIN, 6 * HOUR, HOUR, 30 * DAY)
    bad_hour = range(10 * 24 * 60, 10 * 24 * 60 + 60)
    for minute in range(30 * 24 * 60):
        bad = 144 if minute in bad_hour else 0  # of 10,000 a minute: 1.44 %
        counts.add(T0 + minute * MIN, good=True, n=10_000 - bad)
        counts.add(T0 + minute * MIN, good=False, n=bad)
    now = T0 + 30 * DAY - 1
    # the window that ends at the hour's last millisecond and reaches back to its first minute's bucket
    assert burn_rate(*counts.window(T0 + 10 * DAY + HOUR - 1, HOUR - MIN), 0.999) == pytest.approx(14.4)
    consumed, remaining = budget(*counts.window(now, 30 * DAY), 0.999)
    assert consumed == pytest.approx(0.02, rel=1e-9) and remaining == pytest.approx(0.98)


def test_a_full_outage_pages_after_the_workbooks_0_864_minutes_and_the_short_window_resets_it() -> None:
    """Workbook table 5-8: 99.9 %, 14.4x over 1 h: a 100 % outage is detected in 0.864 min (52 s); the 5-minute
    window stops that rule ~5 min after the outage; the 6x rule's 30-minute window keeps the page ~30 min."""
    settings = SloSettings(evaluate_every_ms=1000)
    ev = SloEvaluator([slo(0.999)], settings=settings)
    start, end = T0 + 3 * HOUR, T0 + 3 * HOUR + 10 * MIN
    timeline: list[tuple[int, str]] = []
    for second in range(4 * 3600):
        ts = T0 + second * 1000
        for a in alerts(ev.on_outcome(outcome(ts, success=not start <= ts < end))):
            if a["labels"]["alert"] == "page":
                timeline.append((ts, a["status"]))
    expected = detection_ms(1.0, 0.999, 14.4, HOUR)
    assert expected == pytest.approx(0.864 * MIN)
    (fired, status), (resolved, status2) = timeline
    assert status == "firing" and status2 == "resolved"
    # The 1-hour window reaches back up to one more minute (the bucket holding now - 1h): 52 to 53 s.
    assert expected <= fired - start <= expected + 2000
    assert 29 * MIN <= resolved - end <= 31 * MIN


def test_the_fastest_page_rule_alone_resets_about_five_minutes_after_the_outage() -> None:
    settings = SloSettings(evaluate_every_ms=1000)
    ev = SloEvaluator([slo(0.999, burn_rules=["page 14.4 1h 5m"])], settings=settings)
    start, end = T0 + 3 * HOUR, T0 + 3 * HOUR + 10 * MIN
    changes = []
    for second in range(4 * 3600):
        ts = T0 + second * 1000
        changes += [(ts, a["status"]) for a in alerts(ev.on_outcome(outcome(ts, not start <= ts < end)))]
    assert [s for _, s in changes] == ["firing", "resolved"]
    assert 4.9 * MIN <= changes[1][0] - end <= 6 * MIN


@pytest.mark.parametrize(("success", "fires"), [(0.90, True), (0.995, False)])
def test_objective_0_99_fed_0_90_pages_and_fed_0_995_does_not(success: float, fires: bool) -> None:
    rng = random.Random(7)
    ev = SloEvaluator([slo(0.99)])
    out: list[Emission] = []
    for second in range(0, 2 * 3600, 5):
        out += ev.on_outcome(outcome(T0 + second * 1000, rng.random() < success))
    firing = [a for a in alerts(out) if a["status"] == "firing"]
    assert bool(firing) is fires
    if fires:
        assert {a["source"] for a in firing} == {"slo"}
        assert {a["labels"]["alert"]: a["severity"] for a in firing} == {"page": "critical", "ticket": "warning"}
        assert all(a["evidence"]["value"] > a["evidence"]["threshold"] for a in firing)
    last = reports(out)[-1]
    assert last["error_budget_consumed"] == pytest.approx((1 - last["sli_value"]) / 0.01)
    assert (last["alerting"] != "none") is fires


def test_min_events_keeps_a_quiet_agents_single_failure_from_paging() -> None:
    ev = SloEvaluator([slo(0.99)])
    out = []
    for i in range(5):
        out += ev.on_outcome(outcome(T0 + i * 10 * MIN, success=i != 2))
    assert not alerts(out) and reports(out)[-1]["burn_rates"]["5m"] == 0.0
    assert max(r["burn_rates"]["1h"] for r in reports(out)) > 14.4  # it burns, but on 3 events


# ---------------------------------------------------------------------------------------------- state


def test_state_stays_bounded_over_35_days_and_survives_a_json_round_trip() -> None:
    settings = SloSettings(evaluate_every_ms=HOUR)  # the cost is in evaluations; the state is what is counted
    ev = SloEvaluator([slo(0.99)], settings=settings)
    rng = random.Random(3)
    for minute in range(0, 35 * 24 * 60, 2):
        ev.on_outcome(outcome(T0 + minute * MIN, rng.random() < 0.995))
    (series,) = ev._series["s"].values()
    assert len(series.counts.fine) <= 6 * 60 + 1 and len(series.counts.coarse) <= 30 * 24 + 1
    text = json.dumps(ev.to_dict())
    assert len(text) < 12_000
    restored = SloEvaluator.from_dict(json.loads(text), [slo(0.99)], settings=settings)
    later = [outcome(T0 + 35 * DAY + i * MIN, i % 3 != 0) for i in range(200)]
    assert [repr(restored.on_outcome(o)) for o in later] == [repr(ev.on_outcome(o)) for o in later]


def test_a_series_without_events_in_its_window_leaves_the_state() -> None:
    ev = SloEvaluator([slo(0.99, window="1d", burn_rules=["page 2 1h 5m"])])
    ev.on_outcome(outcome(T0, True, agent="gone"))
    ev.on_outcome(outcome(T0 + 1, True, agent="stays"))
    for hour in range(1, 30):
        ev.on_outcome(outcome(T0 + hour * HOUR, True, agent="stays"))
    assert ev.series_count() == 1


def test_replayed_offsets_are_counted_once() -> None:
    ev = SloEvaluator([slo(0.99)])
    for i in range(50):
        ev.on_outcome(outcome(T0 + i * 1000, False), (0, i))
        ev.on_outcome(outcome(T0 + i * 1000, False), (0, i))
    (series,) = ev._series["s"].values()
    assert series.counts.window(T0 + 50_000, HOUR) == (0, 50)


# ---------------------------------------------------------------------------------------------- SLIs and scope


def test_each_sli_counts_its_events_and_scope_splits_or_filters_budgets() -> None:
    slos = parse_slos(
        [
            {"name": "lat", "sli": "latency_below:800", "objective": 0.9, "scope": {"task_type": "*"}},
            {"name": "err", "sli": "error_rate_below", "objective": 0.9, "scope": {"agent_name": "a"}},
            {"name": "q", "sli": "metric:queue_depth<50", "objective": 0.9},
        ]
    )
    ev = SloEvaluator(slos, settings=SloSettings(min_events=0))
    for i in range(10):
        ev.on_outcome(outcome(T0 + i, True, task="x", latency=900.0 if i < 3 else 100.0))
        ev.on_outcome(outcome(T0 + i, True, task="y", latency=None))  # no latency: not valid for latency SLIs
        ev.on_outcome(outcome(T0 + i, True, agent="b"))  # out of err's scope
        ev.on_metric({"ts": T0 + i, "agent_name": "a", "name": "queue_depth", "value": float(45 + i)})
        ev.on_metric({"ts": T0 + i, "agent_name": "a", "name": "other", "value": 1e9})
    ev.on_error({"ts": T0, "agent_name": "a", "severity": "error"})
    ev.on_error({"ts": T0, "agent_name": "a", "severity": "warning"})  # not an error of the SLI
    got = {s: {k: v.counts.window(T0 + 100, HOUR) for k, v in series.items()} for s, series in ev._series.items()}
    assert got == {
        "lat": {("a", "x"): (7, 10), ("b", "t"): (10, 10)},
        "err": {("a", None): (20, 21)},
        "q": {("a", None): (5, 10)},
    }


def test_alerts_go_through_the_lifecycle_a_silence_mutes_them_and_the_reports_still_say_so() -> None:
    settings = Settings(sections={"slo": [{"name": "shop", "sli": "success_rate", "objective": 0.99}]})
    config = PipelineConfig.from_settings(settings)
    p = AgentPipeline("shop", config)
    silence = {"event_id": "c1", "ts": T0, "agent_name": "shop", "command": "silence", "by": "ann",
               "args": {"matchers": json.dumps({"source": "slo", "alert": "ticket"}), "until_ms": str(T0 + DAY)}}  # fmt: skip
    p.on_event("Command", silence, (0, 0))
    out = []
    for i in range(1, 1200):
        record = {"event_id": f"e{i}", "ts": T0 + i * 1000, "agent_name": "shop", "task_type": "buy",
                  "variant_id": "v1", "success": i % 10 != 0, "reward": 1.0, "latency_ms": 5.0, "cost_usd": None,
                  "features": {}, "attributes": {}}  # fmt: skip
        out += p.on_event("AgentOutcome", record, (0, i))
    fired = [a for a in alerts(out) if a["source"] == "slo"]
    assert [(a["labels"]["alert"], a["status"]) for a in fired] == [("page", "firing")]
    assert [r["alerting"] for r in reports(out)] == ["none"] + ["page"] * 18  # the first: 59 events, below 100
    for r in reports(out):
        assert decode(encode("SloReport", r))[1] == r
    restored = AgentPipeline.from_dict(json.loads(json.dumps(p.to_dict())), config)
    assert restored.to_dict() == p.to_dict()


def test_an_idle_agents_alert_resolves_on_the_workers_timer() -> None:
    am = AlertManager()
    ev = SloEvaluator([slo(0.99)], am)
    out = []
    for i in range(600):
        out += ev.on_outcome(outcome(T0 + i * 1000, i % 5 != 0))
    assert [a["status"] for a in alerts(out)] == ["firing", "firing"]
    assert ev.tick(T0 + 600_000 + 30_000) == []  # within an interval of the last input: events drive
    assert [a["labels"]["alert"] for a in alerts(ev.tick(T0 + 2 * HOUR))] == ["page"]  # 2h: still a ticket
    later = ev.tick(T0 + 7 * HOUR)  # the 6-hour short window of 'ticket 1 3d 6h' has no errors left
    assert [(a["labels"]["alert"], a["status"]) for a in alerts(later)] == [("ticket", "resolved")]


# ---------------------------------------------------------------------------------------------- declarations


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"sli": "p99"}, "slo s: field sli: 'p99' is not an SLI"),
        ({"sli": "metric:q=5"}, "slo s: field sli: 'metric:q=5' is not an SLI"),
        ({"objective": 1.0}, "slo s: field objective: 1.0 is not allowed"),
        ({"window": "forever"}, "slo s: field window: 'forever' is not allowed"),
        ({"scope": {"variant_id": "v1"}}, "slo s: field scope: key 'variant_id' is not allowed"),
        ({"burn_rules": ["alarm 2 1h 5m"]}, "slo s: field burn_rules: 'alarm 2 1h 5m': severity 'alarm'"),
        ({"window": "1d", "burn_rules": ["page 2 3d 1h"]}, "slo s: field burn_rules: 'page 2 3d 1h': its long"),
        ({"min_events": -1}, "slo s: field min_events: -1 is not allowed"),
    ],
)
def test_each_mistake_names_the_slo_and_the_field(raw: dict[str, Any], expected: str) -> None:
    table = {"name": "s", "sli": "success_rate", "objective": 0.99, **raw}
    with pytest.raises(SloConfigError) as info:
        parse_slos([table])
    assert info.value.errors[0].startswith(expected), info.value.errors


def test_the_pipeline_config_reads_slo_tables_and_burn_rules_from_the_settings() -> None:
    settings = Settings(
        sections={
            "slo": [{"name": "x", "sli": "success_rate", "objective": 0.95}],
            "slo_alerting": {"burn_rules": "page 10 1h 5m", "evaluate_every_ms": "1000"},
        }
    )
    config = PipelineConfig.from_settings(settings)
    assert [r.text for r in config.slos[0].burn_rules] == ["page 10 1h 5m"]
    assert config.slo.evaluate_every_ms == 1000
    assert PipelineConfig.from_settings(Settings()).version == PipelineConfig.from_settings(Settings()).version
    assert config.version != PipelineConfig.from_settings(Settings()).version
