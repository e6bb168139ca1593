"""The web console in a real browser, against ``reverify up`` on the embedded stack with a seeded degradation.

One ``reverify up`` (the session's broker, its own topics and embedded ClickHouse) serves the module. Three
agents are fed through the SDK: one whose active variant degrades and is rolled back, one with a variant
waiting for approval, and one whose name is markup. Pages are read as a person does: through Chromium,
with screenshots at 1280x800 written for each page; no page may log a console error.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from confluent_kafka import Producer
from reverify.processors.base import make_alert
from reverify.schemas import encode
from reverify.streams.client import AgentEvents
from reverify.streams.settings import Settings

from tests.support import WorkerProcess, make_settings, read_all, settings_env

pytestmark = pytest.mark.integration
REVERIFY = str(Path(sys.executable).with_name("reverify"))
OPERATOR = "console-tester"
TASK = "search"
SCRIPT_AGENT = "<script>alert(1)</script>"
# An assurance case the failing agent fails: its alert is one people acknowledge (a rollback's is an event).
CASES = """
[[assurance]]
name = "console_success_rate"
claim = "Every agent succeeds at least 85% of the time"
evidence = "success_rate"
scope = { agent_name = "*", task_type = "*" }
window = "100 events"
threshold_min = 0.85
severity = "warning"
min_evidence = 30
"""


class Stack:
    """``reverify up`` and what was published to it."""

    def __init__(self, settings: Settings, process: WorkerProcess) -> None:
        self.settings, self.process = settings, process
        self.uid = uuid.uuid4().hex[:6]
        self.degrading = f"rb-{self.uid}"
        self.waiting = f"ap-{self.uid}"
        self.failing = f"ak-{self.uid}"
        self.drifting = f"dr-{self.uid}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"


def _until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not {what} within {timeout:.0f}s"
        time.sleep(0.5)


def _publish(settings: Settings, stack: Stack) -> None:
    """The degrading agent (v1 promoted, then collapses: rolled back to v2), the waiting one (v2 proposed while
    v1 stays active), the failing one (its assurance case fails; no rollback inhibits the alert), one whose
    metric drifts, and the agent whose name is a script."""
    rng = random.Random(3)
    # Spread over the last 40 minutes, so that the charts (and the screenshots in the README) draw lines
    base = int(time.time() * 1000) - 2_400_000
    with AgentEvents(settings=settings) as events:
        for i in range(500):
            variant = "v2" if i % 2 == 0 else "v1"
            p = {"v1": 0.95 if i < 200 else 0.5, "v2": 0.8}[variant]
            success = rng.random() < p
            events.outcome(
                agent_name=stack.degrading, task_type=TASK, variant_id=variant, success=success,
                reward=1.0 if success else 0.0, ts=base + i * 4_800,
            )  # fmt: skip
        for i in range(24):
            variant = "v1" if i < 12 else "v2"
            events.outcome(
                agent_name=stack.waiting, task_type=TASK, variant_id=variant, success=variant == "v2",
                reward=0.5 if variant == "v1" else 0.8, ts=base + i * 100_000,
            )  # fmt: skip
        for i in range(150):  # half succeed from the start: the case fails, and there is no change to roll back
            events.outcome(
                agent_name=stack.failing, task_type=TASK, variant_id="v0", success=i % 2 == 0,
                reward=0.5, ts=base + i * 16_000,
            )  # fmt: skip
        for i in range(1300):  # a drift series: the first 1,000 values are its baseline, then it shifts
            value = rng.gauss(50, 10) if i < 1000 else rng.gauss(80, 10)
            events.metric(agent_name=stack.drifting, name="queue_depth", value=value, ts=base + i * 1_800)
        for i in range(5):
            events.outcome(
                agent_name=SCRIPT_AGENT, task_type="t", variant_id="v0", success=True, reward=0.9, ts=base + i
            )
        assert events.flush(30) == 0


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "reverify.toml").write_text(CASES)
    settings = make_settings(broker, tmp, "c", tmp / "reverify.toml")
    process = WorkerProcess(settings, command=(REVERIFY, "up"), REVERIFY_WEB_BY=OPERATOR)
    try:
        _until("ready", lambda: process.process.poll() is not None or process.readyz().get("ready"), 90)
        assert process.process.poll() is None, process.tail()
        up = Stack(settings, process)
        _publish(settings, up)
        _until(
            "rolled back",
            lambda: any(r["agent_name"] == up.degrading for _p, _o, r in read_all(settings, "control.rollbacks")),
        )
        yield up
    finally:
        process.stop()


class Browser:
    """One tab; console errors and dialogs of every page it opens are kept."""

    def __init__(self, context: Any, shots: Path) -> None:
        self.page = context.new_page()
        self.shots = shots
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()  # the console's own confirmations ("Approve v2 for ...?")

    def open(self, url: str, shot: str | None = None) -> Any:
        response = self.page.goto(url)
        assert response is not None and response.status == 200, (
            f"{url}: {response and response.status} {self.page.inner_text('main')[:500]}"
        )
        if shot:
            self.page.screenshot(path=str(self.shots / f"console-{shot}.png"))  # docs/images' names
        return self.page

    def reload_until(self, url: str, what: str, check: Callable[[Any], bool], timeout: float = 60.0) -> Any:
        return _until(what, lambda: check(self.open(url)) and self.page, timeout)


@pytest.fixture(scope="module")
def browser(browser_context: Any, screenshots: Path) -> Iterator[Browser]:
    tab = Browser(browser_context, screenshots)
    yield tab
    tab.page.close()


def _agent_url(stack: Stack, name: str) -> str:
    return f"{stack.url}/agent?name={quote(name)}"


def test_fleet_page_shows_the_rollback_id_and_draws_its_charts(stack: Stack, browser: Browser) -> None:
    rollback = next(
        r for _p, _o, r in read_all(stack.settings, "control.rollbacks") if r["agent_name"] == stack.degrading
    )
    page = browser.reload_until(
        stack.url + "/",
        "showing the rollback",
        lambda p: rollback["rollback_id"] in p.locator("code.rollback-id").all_inner_texts(),
    )
    assert page.locator("svg.chart path.series").count() >= 2  # success rate, reward, outcomes drawn
    assert page.locator(f'svg.chart g.marker.rollback[data-id="{rollback["rollback_id"]}"]').count() >= 1
    browser.open(stack.url + "/", shot="fleet")


def test_fleet_page_shows_a_running_experiment_with_its_decision(stack: Stack, browser: Browser) -> None:
    name = f"exp-{stack.uid}"
    started = subprocess.run(
        [REVERIFY, "experiment", "start", name, "--agent", stack.waiting, "--task", TASK, "--variants", "v1,v2"],
        env=settings_env(stack.settings), cwd=stack.settings.data_dir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    page = browser.reload_until(
        stack.url + "/",
        "listing the experiment",
        lambda p: name in p.locator("code.experiment").all_inner_texts(),
    )
    cells = page.locator("tr", has=page.locator("code.experiment", has_text=name)).locator("td").all_inner_texts()
    assert cells[1:4] == [stack.waiting, "success_rate", "v1 0, v2 0"], cells  # no unit assigned yet
    assert cells[6] == "continue" and "100 units" in cells[7], cells


def test_fleet_page_follows_the_alerts_topic_live(stack: Stack, browser: Browser) -> None:
    browser.open(stack.url + "/")  # the console follows the topic from the first look at the fleet page
    # (an agent of its own: the worker holds no state for this alert, so it could not be acknowledged)
    now = int(time.time() * 1000)
    title = f"live check {stack.uid}: queue depth over 500"
    alert = make_alert(source="circuit", status="firing", severity="warning", title=title,
                       labels={"agent_name": f"live-{stack.uid}"}, ts=now, starts_at=now, cause=now,
                       evidence={"value": 612, "threshold": 500, "sample_size": 1}).value  # fmt: skip
    producer = Producer(stack.settings.kafka_config())
    producer.produce(stack.settings.topic("alerts"), encode("Alert", alert), alert["fingerprint"].encode())
    assert producer.flush(20) == 0
    page = browser.reload_until(
        stack.url + "/", "showing the live alert", lambda p: title in p.locator("table.live").inner_text(), 30
    )
    row = page.locator("table.live tr", has_text=title).first.locator("td").all_inner_texts()
    assert row[1:3] == ["firing", "warning"] and row[4] == f"live-{stack.uid}", row


def test_agent_page_marks_the_rollback_on_its_charts(stack: Stack, browser: Browser) -> None:
    rollback = next(
        r for _p, _o, r in read_all(stack.settings, "control.rollbacks") if r["agent_name"] == stack.degrading
    )
    selector = f'.agent-charts g.marker.rollback[data-id="{rollback["rollback_id"]}"]'
    page = browser.reload_until(
        _agent_url(stack, stack.degrading), "marking the rollback", lambda p: p.locator(selector).count() >= 3
    )
    assert page.locator(".agent-charts g.marker.promotion").count() >= 3  # v1's auto_apply before it
    assert page.locator(".active-variant").all_inner_texts() == ["v2"]
    assert "rollback" in page.locator("table").first.inner_text()
    browser.open(_agent_url(stack, stack.degrading), shot="agent")


def test_approve_publishes_an_approval_and_the_variant_becomes_active(stack: Stack, browser: Browser) -> None:
    url = stack.url + "/proposals"
    row = f'table.proposals tr:has(a:text-is("{stack.waiting}"))'
    page = browser.reload_until(url, "offering the proposal", lambda p: p.locator(row).count() == 1)
    browser.open(url, shot="proposals")
    proposal_id = page.locator(f"{row} code").inner_text()
    page.locator(f"{row} button.approve").click()
    page.wait_for_selector("p.notice")
    assert f"approved {proposal_id}" in page.locator("p.notice").inner_text()
    assert browser.dialogs and stack.waiting in browser.dialogs[-1]
    approvals = [r for _p, _o, r in read_all(stack.settings, "control.approvals") if r["proposal_id"] == proposal_id]
    assert [(a["approved"], a["by"], a["variant_id"]) for a in approvals] == [(True, OPERATOR, "v2")]
    browser.reload_until(
        _agent_url(stack, stack.waiting),
        "showing v2 active",
        lambda p: p.locator(".active-variant").all_inner_texts() == ["v2"],
    )


def test_ack_from_the_alerts_page_shows_acked_by(stack: Stack, browser: Browser) -> None:
    url = stack.url + "/alerts"
    row = f'table.alerts tr:has(a:text-is("{stack.failing}")):has(.firing):has(button.ack)'
    page = browser.reload_until(url, "showing the assurance alert", lambda p: p.locator(row).count() >= 1)
    page.locator(row).first.locator("button.ack").click()
    page.wait_for_selector("p.notice")
    assert f"as {OPERATOR}" in page.locator("p.notice").inner_text()
    acked = f'table.alerts tr:has(a:text-is("{stack.failing}")) .acked'
    page = browser.reload_until(url, "showing acked by", lambda p: p.locator(acked).count() >= 1)
    assert page.locator(acked).first.inner_text() == f"acked by {OPERATOR}"
    browser.open(url, shot="alerts")


def test_a_script_in_an_agent_name_is_shown_as_text(stack: Stack, browser: Browser) -> None:
    page = browser.reload_until(
        stack.url + "/agents", "listing the agent", lambda p: p.get_by_text(SCRIPT_AGENT, exact=True).count() >= 1
    )
    page.get_by_text(SCRIPT_AGENT, exact=True).first.click()
    page.wait_for_load_state()
    assert SCRIPT_AGENT in page.locator("h1").inner_text()
    assert page.evaluate("document.scripts.length") == 1  # console.js only
    assert not browser.dialogs or all(SCRIPT_AGENT not in d and d != "1" for d in browser.dialogs)


def test_every_page_renders_without_console_errors(stack: Stack, browser: Browser) -> None:
    for shot, path in (
        ("fleet", "/"),
        ("agents", "/agents"),
        ("drift", "/drift"),
        ("alerts", "/alerts"),
        ("proposals", "/proposals"),
    ):
        page = browser.open(stack.url + path, shot=shot)
        assert page.locator("header nav a.active").count() == 1
    series = f"a[href^='/drift/series?agent={stack.drifting}']"
    drift = browser.reload_until(stack.url + "/drift", "listing the drift", lambda p: p.locator(series).count() >= 1)
    assert "ALARM" in drift.locator(f"table tr:has({series})").first.inner_text()
    drift.locator(series).first.click()
    drift.wait_for_load_state()
    assert drift.locator("svg.chart path.series").count() >= 2, drift.inner_text("main")[:500]  # PSI, KS over time
    assert drift.locator("svg.histogram .bar.current").count() >= 2  # the metric's baseline and current window
    drift.screenshot(path=str(browser.shots / "console-drift-series.png"))
    browser.page.wait_for_timeout(500)  # console.js has run
    assert browser.errors == []
    shots = {p.name for p in browser.shots.glob("console-*.png")}
    assert {f"console-{name}.png" for name in ("fleet", "agent", "agents", "drift", "alerts", "proposals")} <= shots
