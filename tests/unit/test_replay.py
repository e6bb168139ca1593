"""``reverify replay``'s engine: the worker's rules on lines of JSON, time from their ``ts``."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reverify.processors.pipeline import AgentPipeline
from reverify.schemas import decode, encode
from reverify.streams.replay import KINDS, BadLine, BadLineError, Replay, json_line, replay
from reverify.streams.settings import Settings

T0 = 1_700_000_000_000


def outcome_lines(
    n: int, success_rate: Callable[[int, str], float], *, agent: str = "hunter", every_ms: int = 100, seed: int = 1
) -> list[str]:
    """``n`` outcomes of variants v0 and v1 in turn, ``every_ms`` apart, binary rewards."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        variant = f"v{i % 2}"
        success = rng.random() < success_rate(i, variant)
        line = {"kind": "outcome", "agent_name": agent, "task_type": "t", "variant_id": variant}
        lines.append(json.dumps({**line, "success": success, "reward": float(success), "ts": T0 + every_ms * i}))
    return lines


def collapse(i: int, variant: str) -> float:
    """v0 (the first active variant) falls from 95 % to 30 % success after 1,500 outcomes."""
    return 0.3 if variant == "v0" and i >= 1500 else 0.95


def settings_with(**sections: dict[str, Any]) -> Settings:
    return Settings(sections=sections)


def test_a_collapse_of_the_active_variant_produces_one_rollback_to_the_other() -> None:
    out = list(replay(outcome_lines(3000, collapse)))
    rollbacks = [r for t, r in out if t == "Rollback"]
    assert [(r["from_variant"], r["to_variant"]) for r in rollbacks] == [("v0", "v1")]
    assert T0 + 100 * 1500 < rollbacks[0]["ts"] < T0 + 100 * 1700  # time is the inputs' ts
    active = [r["variant_id"] for t, r in out if t == "ActiveVariant"]
    assert active[-1] == "v1"


def test_a_stationary_stream_rolls_nothing_back() -> None:
    out = list(replay(outcome_lines(3000, lambda i, v: 0.95)))
    assert not [r for t, r in out if t == "Rollback"]


def test_settings_change_the_decision() -> None:
    """What --set is for: a threshold out of reach keeps the collapsed variant."""
    strict_settings = settings_with(learning={"success_threshold": 1e9, "reward_threshold": 1e9})
    out = list(replay(outcome_lines(3000, collapse), strict_settings))
    assert not [r for t, r in out if t == "Rollback"]


def test_the_same_file_twice_gives_identical_output(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = outcome_lines(2000, collapse)
    lines.insert(700, json.dumps({"kind": "metric", "agent_name": "hunter", "name": "queue", "value": 3, "ts": T0}))
    lines.insert(900, json.dumps({"kind": "error", "agent_name": "hunter", "component": "db", "error_type": "Timeout",
                                  "task_type": "t", "variant_id": "v0", "ts": T0 + 90_000}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")

    def run() -> list[str]:
        with path.open() as f:
            return [json_line(*e) for e in Replay(source=path.name).run(f)]

    first, second = run(), run()
    assert first == second and len(first) > 100
    assert all(isinstance(json.loads(line)["ts"], int) for line in first)


def test_bad_lines_are_reported_with_their_numbers_and_skipped() -> None:
    good = outcome_lines(20, lambda i, v: 0.9)
    bad = [
        "{not json",
        "[1, 2]",
        json.dumps({"kind": "verdict", "agent_name": "hunter"}),
        json.dumps(
            {
                "kind": "outcome",
                "agent_name": "hunter",
                "task_type": "t",
                "variant_id": "v0",
                "success": True,
                "reward": 1.5,
                "ts": T0,
            }
        ),  # fmt: skip
        json.dumps(
            {
                "kind": "outcome",
                "agent_name": "hunter",
                "task_type": "t",
                "variant_id": "v0",
                "success": True,
                "reward": 0.5,
            }
        ),  # fmt: skip
        json.dumps({"kind": "metric", "agent_name": "hunter", "name": "q", "value": 1.0, "ts": T0, "colour": "red"}),
        json.dumps({"kind": "metric", "agent_name": "hunter", "value": 1.0, "ts": T0}),
        json.dumps(
            {"kind": "error", "agent_name": "hunter", "component": "db", "error_type": "E", "severity": "bad", "ts": T0}
        ),  # fmt: skip
    ]
    lines = good[:10] + bad + [""] + good[10:]
    found: list[BadLine] = []
    r = Replay(on_bad=found.append)
    out = list(r.run(lines))
    assert found == r.bad
    assert [b.line for b in r.bad] == list(range(11, 19))  # the blank line 19 is no input
    reasons = [b.reason for b in r.bad]
    for number, expected in enumerate(
        [
            "not JSON",
            "not a JSON object",
            "kind must be one of outcome, error, metric, feedback, got 'verdict'",
            "reward must be within [0, 1], got 1.5",
            "ts is missing",
            "metric has no field 'colour'",
            "metric is missing 'name'",
            "severity must be one of",
        ]
    ):
        assert expected in reasons[number], (expected, reasons[number])
    assert r.inputs == Counter(outcome=20)
    latest = {q["variant_id"]: q["n"] for t, q in out if t == "QValue"}
    assert sum(latest.values()) == 20  # every good line applied


def test_strict_stops_at_the_first_bad_line() -> None:
    lines = outcome_lines(5, lambda i, v: 0.9) + ['{"kind": "outcome"}'] + outcome_lines(5, lambda i, v: 0.9)
    with pytest.raises(BadLineError, match=r"line 6: outcome is missing 'agent_name'"):
        list(Replay(strict=True).run(lines))


def test_held_q_values_are_published_once_a_second_of_event_time() -> None:
    """The worker's publish timer, on the inputs' clock: 40 outcomes of one variant 100 ms apart span 4 s."""
    lines = [line for line in outcome_lines(80, lambda i, v: 0.9, every_ms=50) if '"v0"' in line]
    published = [q["n"] for t, q in replay(lines) if t == "QValue"]
    assert published == [10, 20, 30, 40]


def test_batches_do_not_change_what_each_agent_emits() -> None:
    lines = [line for agent in ("ann", "bob") for line in outcome_lines(1200, collapse, agent=agent, every_ms=7)]
    lines.sort(key=lambda line: json.loads(line)["ts"])
    small = settings_with(worker={"batch_size": 1})

    def per_agent(settings: Settings | None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t, r in replay(lines, settings):
            out.setdefault(r.get("agent_name", ""), []).append(json_line(t, r))
        return out

    assert per_agent(small) == per_agent(None)


def test_replay_applies_what_the_sdk_would_send_to_the_worker_pipeline() -> None:
    """Between the timers, a replay emits exactly what the agent's pipeline gives for the SDK's records."""
    lines = outcome_lines(300, collapse, every_ms=1)  # within one second: no timer runs before the end
    pipeline = AgentPipeline("hunter", Replay().config)
    expected = []
    for offset, line in enumerate(lines, 1):
        fields = json.loads(line)
        del fields["kind"]
        record = {"latency_ms": 0.0, "cost_usd": 0.0, "tokens_in": None, "tokens_out": None, "features": {},
                  "attributes": {}, "trace_id": None, "next_state": None, **fields}  # fmt: skip
        record["event_id"] = Replay()._id_prefix + f"{offset:012x}"
        expected += [(e.record_type, e.value) for e in pipeline.on_event("AgentOutcome", record, (0, offset))]
    expected += [(e.record_type, e.value) for e in pipeline.flush()]
    assert list(replay(lines)) == expected


def test_json_lines_are_json_safe() -> None:
    line = json_line("DeadLetter", {"value": b"\xff\x00", "ts": 5, "q": float("inf")})
    assert json.loads(line) == {"record_type": "DeadLetter", "value": "\\xff\x00", "ts": 5, "q": None}


EVERY_FIELD = {
    "outcome": {"agent_name": "a", "task_type": "t", "variant_id": "v", "success": True, "reward": 1, "latency_ms": 12,
                "cost_usd": 0.5, "tokens_in": 3, "tokens_out": 2**40, "features": {"x": 1, "y": -2.5},
                "attributes": {"k": "v"}, "trace_id": "tr", "next_state": "s", "ts": T0, "event_id": "e",
                "propensity": 0.25, "prediction": True, "model_version": "m1"},
    "error": {"agent_name": "a", "component": "db", "error_type": "E", "message": "m", "retryable": True,
              "severity": "critical", "task_type": "t", "variant_id": "v", "pipeline": True, "attributes": {"k": "v"},
              "trace_id": "tr", "ts": T0, "event_id": "e"},
    "metric": {"agent_name": "a", "name": "q", "value": 3, "task_type": "t", "variant_id": "v",
               "attributes": {"k": "v"}, "ts": T0, "event_id": "e"},
    "feedback": {"agent_name": "a", "outcome_id": "o", "reward": 0, "success": False, "label": "spam",
                 "attributes": {"k": "v"}, "ts": T0, "event_id": "e"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(KINDS))
def test_the_records_a_replay_does_not_decode_are_what_decoding_gives(name: str) -> None:
    """A replay hands the worker's first step the SDK's record instead of decoding the bytes made of it: the same."""
    kind = KINDS[name]
    needed = (*kind.required, "ts", "event_id", *(("success", "reward") if name == "outcome" else ()))
    minimal = {field: EVERY_FIELD[name][field] for field in needed}
    for fields in (minimal, EVERY_FIELD[name]):
        record = kind.build(**{**kind.defaults, **fields})
        assert decode(encode(kind.record_type, record)) == (kind.record_type, record)


def test_reusing_the_records_changes_no_emission() -> None:
    lines = outcome_lines(2500, collapse, every_ms=7)
    lines += [json.dumps({"kind": kind, **fields, "event_id": f"{kind}-{i}", "ts": T0 + 500 * i})
              for i in range(30) for kind, fields in EVERY_FIELD.items()]  # fmt: skip
    lines.sort(key=lambda line: json.loads(line)["ts"])
    decoding = Replay()
    decoding._decode = decode  # the worker's path: every value decoded
    assert list(decoding.run(lines)) == list(Replay().run(lines))
