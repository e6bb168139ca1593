"""Benchmark: outcomes per second through one worker (all rules on) beside a bare consume-and-decode loop.

Run by hand: ``python tests/bench/bench_worker.py [N]``. Starts an embedded broker on a free port,
publishes N outcomes (200,000: 2,000 per agent, so every drift series learns its 1,000-value baseline in the
first half and is monitored in the second) of 100 agents x 5 tasks x 3 variants, then measures in the same run:

1. a bare confluent-kafka consumer that reads and decodes the same topic (the baseline);
2. ``reverify worker`` (a subprocess) processing the same N from the beginning;
3. the delay from publishing an outcome to publishing its Rollback (p50 / p99), with the worker live
   and every agent's v0 collapsing from 0.95 to 0.3.

Beside the rates it prints events per CPU second of each process (user + system, all threads): both use about
one core, so the two ratios agree, and a run where they do not was disturbed by something else.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from reverify.schemas import decode, decode_as
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import EmbeddedBroker, free_port
from reverify.streams.settings import Settings
from reverify.streams.topics import ensure_topics

AGENTS, TASKS, VARIANTS = 100, 5, 3


def publish(settings: Settings, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with AgentEvents(settings=settings) as events:
        for i in range(n):
            agent, task = rng.randrange(AGENTS), rng.randrange(TASKS)
            variant = rng.randrange(VARIANTS)
            events.outcome(
                agent_name=f"agent{agent}",
                task_type=f"task{task}",
                variant_id=f"v{variant}",
                success=rng.random() < 0.9 - 0.05 * variant,
                reward=rng.random(),
                latency_ms=rng.lognormvariate(6, 0.4),
                cost_usd=0.002,
                features={"intent_score": rng.gauss(50, 10)},
                ts=1_700_000_000_000 + i,
            )
        assert events.flush(120) == 0
    # The broker was reachable throughout: a full queue waits for room, so nothing may be dropped.
    assert events.dropped == 0 and events.failed == 0, (events.dropped, events.failed)


def wait_until(done: Any, what: str, seconds: float, poll: float = 0.02) -> None:
    """Poll ``done()`` until it is true; after ``seconds`` stop the bench, saying what did not happen."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_worker: {what} within {seconds:.0f} s")
        time.sleep(poll)


def bare_rate(settings: Settings, n: int) -> tuple[float, float]:
    """Events per second and per CPU second (this process: the loop and librdkafka's threads)."""
    topic = settings.topic("agent.outcomes")
    consumer = Consumer(settings.kafka_config(**{"group.id": "bench-bare", "enable.auto.commit": False}))
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    seen, start, cpu = 0, time.perf_counter(), time.process_time()
    deadline = time.monotonic() + 600
    while seen < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_worker: the bare loop read {seen:,} of {n:,} events within 600 s")
        for msg in consumer.consume(1000, 1.0):
            if msg.error() is None:
                decode_as("AgentOutcome", msg.value())
                seen += 1
    rates = seen / (time.perf_counter() - start), seen / (time.process_time() - cpu)
    consumer.close()
    return rates


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def consumed(metrics_port: int) -> float:
    # Only the one counter (prometheus_client's ``name[]`` filter): the whole page has a series per arm and
    # agent, and rendering it four times a second would cost the worker ~10 % of what it measures.
    url = f"http://127.0.0.1:{metrics_port}/metrics?name[]=reverify_events_consumed_total"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("reverify_events_consumed_total{")
    )


def ready(web_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/readyz", timeout=5) as answer:
            return answer.status == 200
    except OSError:  # not listening yet, or 503 while it joins the group
        return False


def start_worker(settings: Settings, workdir: str) -> tuple[subprocess.Popen, int, int]:
    metrics_port, web_port = free_port(), free_port()
    env = dict(
        os.environ,
        REVERIFY_KAFKA=settings.kafka,
        REVERIFY_METRICS_PORT=str(metrics_port),
        REVERIFY_WEB_PORT=str(web_port),
        REVERIFY_DATA_DIR=workdir,
        REVERIFY_TOPIC_PREFIX=settings.topic_prefix,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reverify.streams", "worker"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=open(Path(workdir) / "worker.log", "wb"),  # noqa: SIM115 - the child owns it until it exits
    )
    return proc, metrics_port, web_port


def rollback_delays(settings: Settings, seconds: float = 40.0, rate: float = 500.0) -> list[float]:
    """Publish live outcomes (ts = now) at ``rate``/s where v0 collapses; return publish->Rollback delays in seconds.

    The rate is one the worker sustains (half its measured throughput at most), so the delay measured is
    the pipeline's, not the age of a backlog.
    """
    watcher = Consumer(settings.kafka_config(**{"group.id": f"bench-rb-{time.time_ns()}"}))
    topic = settings.topic("control.rollbacks")
    parts = watcher.list_topics(topic, timeout=10).topics[topic].partitions
    watcher.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])  # no group join to wait for
    delays: list[float] = []
    rng = random.Random(1)
    with AgentEvents(settings=settings) as events:
        start = time.monotonic()
        per_round = len(range(0, AGENTS, 10)) * TASKS
        next_round = start
        while time.monotonic() - start < seconds:
            next_round += per_round / rate
            collapsed = time.monotonic() - start > seconds / 3
            for agent in range(0, AGENTS, 10):
                for task in range(TASKS):
                    variant = 0 if rng.random() < 0.8 else rng.randrange(1, VARIANTS)
                    p = (0.3 if collapsed else 0.95) if variant == 0 else 0.85
                    events.outcome(
                        agent_name=f"live{agent}",
                        task_type=f"task{task}",
                        variant_id=f"v{variant}",
                        success=rng.random() < p,
                        reward=0.9 if rng.random() < p else 0.1,
                    )
            events.flush(0)
            while True:
                for msg in watcher.consume(100, max(0.0, min(0.01, next_round - time.monotonic()))):
                    if msg.error() is None:
                        _, rb = decode(msg.value())
                        delays.append(time.time() - rb["ts"] / 1000)
                if time.monotonic() >= next_round:
                    break
    watcher.close()
    return delays


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main(n: int = 200_000) -> None:
    with EmbeddedBroker(port=free_port()) as broker, tempfile.TemporaryDirectory() as workdir:
        settings = Settings.load(env={"REVERIFY_KAFKA": broker.bootstrap, "REVERIFY_TOPIC_PREFIX": "bench."}, path=None)
        ensure_topics(AdminClient(settings.kafka_config()), settings.topic_prefix, settings.partitions)
        publish(settings, n)
        bare = bare_rate(settings, n)
        proc, metrics_port, web_port = start_worker(settings, workdir)
        try:
            # Timed from the moment the worker owns its partitions (start-up and the group join are not
            # throughput) to the last event applied; timing from its first counted event would miss the first
            # fetch, which may be most of the backlog.
            wait_until(lambda: ready(web_port), "the worker was not ready", 120)
            start, cpu = time.perf_counter(), cpu_seconds(proc.pid)
            last, half, half_at = 0.0, 0.0, start
            deadline = time.monotonic() + 1800
            while last < n:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(
                        f"bench_worker: the worker applied {last:,.0f} of {n:,} events (exited, or 1800 s passed)"
                    )
                # polled often enough to time the end within ~2 %
                time.sleep(0.25)
                last = consumed(metrics_port)
                if not half and last >= n / 2:
                    half, half_at = last, time.perf_counter()
                print(f"\r  worker: {last:,.0f}/{n:,}", end="", file=sys.stderr)
            end, cpu = time.perf_counter(), cpu_seconds(proc.pid) - cpu
            worker = n / (end - start)
            phases = (half / (half_at - start), (n - half) / (end - half_at))
            print(file=sys.stderr)
            live_rate = min(500.0, worker / 2)
            delays = rollback_delays(settings, rate=live_rate)
        finally:
            proc.terminate()
            proc.wait(20)
        # The bare loop again, after the worker: on a shared machine one run can be off by half; the ratio is to
        # the mean of the two.
        runs = (bare, bare_rate(settings, n))
        bare_runs = tuple(wall for wall, _ in runs)
        bare = sum(bare_runs) / 2
        bare_cpu = sum(per_cpu for _, per_cpu in runs) / 2
    print(f"outcomes: {n:,} ({AGENTS} agents x {TASKS} tasks x {VARIANTS} variants)")
    print(
        f"bare confluent-kafka consume + decode: {bare:>9,.0f} events/s"
        f"  (before the worker {bare_runs[0]:,.0f}, after {bare_runs[1]:,.0f})"
    )
    print(
        f"reverify worker, all rules:            {worker:>9,.0f} events/s  ratio {worker / bare:.2f} (target >= 0.20)"
    )
    print(
        f"  per CPU second of each process (not the target's measure): worker {n / cpu:,.0f}, bare {bare_cpu:,.0f},"
        f" ratio {n / cpu / bare_cpu:.2f}"
    )
    for label, rate in zip(
        ("first half (drift baselines filling)", "second half (every series monitored)"), phases, strict=True
    ):
        print(f"  {label:<37}{rate:>9,.0f} events/s  ratio {rate / bare:.2f}")
    print(
        f"publish -> Rollback delay at {live_rate:,.0f} outcomes/s over {len(delays)} rollbacks: p50 {percentile(delays, 0.5) * 1e3:.0f} ms, "
        f"p99 {percentile(delays, 0.99) * 1e3:.0f} ms (target p99 < 500 ms)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
