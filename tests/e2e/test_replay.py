"""``reverify replay`` as a user runs it, and its decisions equal a real worker's on the same inputs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

from reverify.streams.client import AgentEvents

from tests.e2e.conftest import REVERIFY

T0 = 1_700_000_000_000


def events(agent: str, n: int, seed: int, errors: bool = True) -> list[dict[str, Any]]:
    """``n`` outcomes of variants v0/v1 in turn (v0, the first active, collapses at the middle), metrics and (with
    ``errors``) a few errors between them; every input with its event id and time, as a file would have them."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        variant = f"v{i % 2}"
        success = rng.random() < (0.3 if variant == "v0" and i >= n // 2 else 0.95)
        base = {"agent_name": agent, "ts": T0 + 50 * i, "event_id": f"{agent}-{i}"}
        out.append({"kind": "outcome", **base, "task_type": "t", "variant_id": variant, "success": success,
                    "reward": float(success), "latency_ms": rng.gauss(800, 40)})  # fmt: skip
        if errors and i % 97 == 0:
            out.append({"kind": "error", **base, "event_id": f"{agent}-e{i}", "component": "search",
                        "error_type": "Timeout", "task_type": "t", "variant_id": variant})  # fmt: skip
        if i % 13 == 0:
            out.append({"kind": "metric", **base, "event_id": f"{agent}-m{i}", "name": "queue_depth",
                        "value": rng.gauss(20, 3)})  # fmt: skip
    return out


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run_replay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIFY_")}
    return subprocess.run([REVERIFY, "replay", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def emitted(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_replay_json_prints_each_emitted_record_and_set_changes_the_decision(tmp_path: Path) -> None:
    lines = events("ann", 3000, seed=3)
    lines.insert(10, {"kind": "outcome", "agent_name": "ann", "ts": T0})  # the SDK would reject it
    path = write_lines(tmp_path / "ann.jsonl", lines)

    done = run_replay(tmp_path, str(path), "--json")
    assert done.returncode == 0, done.stderr
    records = emitted(done.stdout)
    assert all(isinstance(r["ts"], int) and r["record_type"] for r in records)
    rollbacks = [r for r in records if r["record_type"] == "Rollback"]
    assert [(r["from_variant"], r["to_variant"]) for r in rollbacks] == [("v0", "v1")]
    assert done.stderr.splitlines() == ["line 11: outcome is missing 'task_type', 'variant_id'"]
    assert emitted(run_replay(tmp_path, str(path), "--json").stdout) == records  # deterministic

    lenient = ["--set", "learning.success_threshold=1e9", "--set", "learning.reward_threshold=1e9"]
    kept = emitted(run_replay(tmp_path, str(path), "--json", *lenient).stdout)
    assert not [r for r in kept if r["record_type"] == "Rollback"]

    people = run_replay(tmp_path, str(path))
    assert people.returncode == 0 and "Rollbacks" in people.stdout and "v0 -> v1" in people.stdout


def test_user_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [{"kind": "outcome", "agent_name": "a"}])
    for args, expected in (
        ([str(path), "--strict"], "error: line 1: outcome is missing"),
        ([str(path), "--set", "learning.nope=1"], "error: learning.nope is not a setting"),
        ([str(tmp_path / "missing.jsonl")], "error: cannot read"),
        ([str(path), "--config", str(tmp_path / "none.toml")], "error: REVERIFY_CONFIG"),
    ):
        done = run_replay(tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith(expected) and "Traceback" not in done.stderr, (args, done.stderr)


def test_replay_decides_what_a_worker_decides_on_the_same_inputs(worker_factory: Any, e2e: Any, tmp_path: Path) -> None:
    """The same inputs through a real worker and through ``reverify replay``: the same rollbacks, decisions and
    active variants (with their ids, which derive from the inputs' event ids) and the same final Q-value per arm.
    How often held Q-values are published follows the worker's wall clock, the replay's event time.

    No errors: they come on their own topic, so how a worker interleaves them with the outcomes follows its
    fetches (an error rate seen a few outcomes earlier or later), while a replay takes the file's order."""
    worker = worker_factory()
    settings = worker.settings
    lines = events("cal", 2400, seed=5, errors=False) + events("dan", 2400, seed=6, errors=False)
    lines.sort(key=lambda line: line["ts"])
    path = write_lines(tmp_path / "both.jsonl", lines)
    replayed = emitted(run_replay(tmp_path, str(path), "--json").stdout)

    followers = {
        t: e2e.Follower(settings, t)
        for t in ("control.rollbacks", "crl.decisions", "crl.active", "crl.qvalues", "crl.incidents")
    }
    with AgentEvents(settings=settings) as sdk:
        for line in lines:
            fields = {k: v for k, v in line.items() if k != "kind"}
            getattr(sdk, line["kind"])(**fields)
        assert sdk.flush(60) == 0

    def final_qvalues(records: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, float]]:
        return {(q["agent_name"], q["variant_id"]): (q["n"], round(q["q"], 9)) for q in records}

    want_q = final_qvalues([r for r in replayed if r["record_type"] == "QValue"])
    assert sum(n for n, _ in want_q.values()) == 4800
    deadline = time.monotonic() + 180
    got_q: dict[tuple[str, str], tuple[int, float]] = {}
    while time.monotonic() < deadline and got_q != want_q:
        followers["crl.qvalues"].poll(1.0)
        got_q = final_qvalues([r for _t, _type, r in followers["crl.qvalues"].seen])
    assert got_q == want_q

    def keyed(record_type: str, fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
        return sorted(tuple(r[f] for f in fields) for r in replayed if r["record_type"] == record_type)

    for topic, record_type, fields in (
        ("control.rollbacks", "Rollback", ("event_id", "agent_name", "from_variant", "to_variant", "ts", "reason")),
        ("crl.decisions", "VariantDecision", ("event_id", "agent_name", "variant_id", "decision", "n")),
        ("crl.active", "ActiveVariant", ("event_id", "agent_name", "variant_id", "previous_variant")),
    ):
        want = keyed(record_type, fields)
        follower = followers[topic]
        while time.monotonic() < deadline and len(follower.seen) < len(want):
            follower.poll(1.0)
        follower.poll(1.0)  # anything beyond what the replay emitted would show here
        assert sorted(tuple(r[f] for f in fields) for _t, _type, r in follower.seen) == want, topic
    assert keyed("Rollback", ("agent_name",))  # the comparison covers a rollback
    # The incidents the rollbacks open, with their first evidence and time to detect. How they end follows the
    # clock of the timer that escalates them: the worker's wall clock (years after these inputs' times) and the
    # replay's event time, so only the openings are the same.
    fields = ("event_id", "incident_id", "agent_name", "failure_started_at", "detected_at", "time_to_detect_ms")
    want = sorted(
        tuple(r[f] for f in fields) for r in replayed if r["record_type"] == "Incident" and r["change"] == "opened"
    )
    assert len(want) == len(keyed("Rollback", ("agent_name",)))
    incidents = followers["crl.incidents"]
    got: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and len(got) < len(want):
        incidents.poll(1.0)
        got = sorted(tuple(r[f] for f in fields) for _t, _type, r in incidents.seen if r["change"] == "opened")
    assert got == want
    for follower in followers.values():
        follower.close()
