"""Alert lifecycle: for, fire once, repeat, resolve at once, keep_firing_for, flapping, ack, silences, inhibition."""

from __future__ import annotations

import json

import pytest
from reverify.processors.alerting import AlertingSettings, AlertManager
from reverify.processors.base import fingerprint, make_alert
from reverify.schemas import encode

EV = {"value": 0.6, "threshold": 0.8, "sample_size": 200}
LABELS = {"case": "c", "agent_name": "a", "task_type": "t"}
MIN = 60_000


def observe(am: AlertManager, active: bool, now: int, **kw):
    kw.setdefault("severity", "warning")
    kw.setdefault("title", "c failed")
    kw.setdefault("evidence", EV)
    return am.observe(kw.pop("source", "assurance"), kw.pop("labels", LABELS), active, now, **kw)


def statuses(emissions):
    for e in emissions:
        encode("Alert", e.value)  # every emission matches the schema
    return [e.value["status"] for e in emissions]


def test_for_keeps_alert_pending_then_fires_once():
    am = AlertManager()
    assert observe(am, True, 0, for_ms=30_000) == []
    assert observe(am, True, 10_000, for_ms=30_000) == []
    fp = fingerprint("assurance", LABELS)
    assert am.state_of(fp) == "pending"
    out = observe(am, True, 30_000, for_ms=30_000)
    assert statuses(out) == ["firing"]
    alert = out[0].value
    assert alert["fingerprint"] == fp and out[0].key == fp and out[0].topic == "alerts"
    assert alert["starts_at"] == 30_000 and alert["ends_at"] is None
    assert alert["evidence"] == {"value": 0.6, "threshold": 0.8, "sample_size": 200.0}
    # fire once: more active observations and ticks within repeat_interval say nothing
    assert observe(am, True, 40_000, for_ms=30_000) == []
    assert am.tick(60 * MIN) == []


def test_pending_that_clears_before_for_is_never_shown():
    am = AlertManager()
    observe(am, True, 0, for_ms=30_000)
    assert observe(am, False, 20_000) == []
    assert am.tick(40_000) == []
    assert am.state_of(fingerprint("assurance", LABELS)) == "inactive"


def test_for_elapses_on_tick():
    am = AlertManager()
    observe(am, True, 0, for_ms=30_000)
    assert am.tick(29_999) == []
    assert statuses(am.tick(30_000)) == ["firing"]


def test_repeat_after_repeat_interval_default_4h():
    assert AlertingSettings().repeat_interval_ms == 4 * 3_600_000
    am = AlertManager()
    observe(am, True, 0)
    assert am.tick(4 * 3_600_000 - 1) == []
    assert statuses(am.tick(4 * 3_600_000)) == ["firing"]
    assert am.tick(4 * 3_600_000 + MIN) == []


def test_resolve_at_once_and_once():
    am = AlertManager()
    observe(am, True, 0)
    out = observe(am, False, 5_000, evidence={"value": 0.9, "threshold": 0.8, "sample_size": 200})
    assert statuses(out) == ["resolved"]
    assert out[0].value["ends_at"] == 5_000 and out[0].value["starts_at"] == 0
    assert out[0].value["evidence"]["value"] == 0.9
    assert observe(am, False, 6_000) == [] and am.tick(5 * 3_600_000) == []


def test_event_ids_are_deterministic():
    def run():
        am = AlertManager()
        return [e.value["event_id"] for e in observe(am, True, 0) + observe(am, False, 1_000)]

    a, b = run(), run()
    assert a == b and len(set(a)) == 2


def test_keep_firing_for():
    am = AlertManager()
    observe(am, True, 0, keep_firing_for_ms=MIN)
    assert observe(am, False, 10_000, keep_firing_for_ms=MIN) == []
    assert am.tick(69_999) == []
    out = am.tick(70_000)
    assert statuses(out) == ["resolved"] and out[0].value["ends_at"] == 70_000
    # back active within keep_firing_for: still the same firing alert, no new notification
    am2 = AlertManager()
    observe(am2, True, 0, keep_firing_for_ms=MIN)
    observe(am2, False, 10_000, keep_firing_for_ms=MIN)
    assert observe(am2, True, 30_000, keep_firing_for_ms=MIN) == []
    assert am2.tick(80_000) == []


def test_flapping_stays_firing_without_renotification():
    am = AlertManager(AlertingSettings(flap_threshold=4, flap_period_ms=3_600_000))
    sent = []
    for i in range(20):  # flip every minute
        sent += observe(am, i % 2 == 0, i * MIN)
    st = statuses(sent)
    # changes 1-4 are told (firing, resolved, firing, resolved); the 5th makes it flapping
    assert st == ["firing", "resolved", "firing", "resolved", "firing"]
    assert sent[-1].value["flapping"] is True
    assert [a["flapping"] for a in am.firing()] == [True]
    # after the condition settles (inactive) for a whole period it resolves, once
    out = am.tick(19 * MIN + 3_600_000)
    assert statuses(out) == ["resolved"]
    assert am.tick(19 * MIN + 2 * 3_600_000) == []


def test_acknowledge_stops_repeats_and_is_cleared_on_resolve():
    am = AlertManager(AlertingSettings(repeat_interval_ms=MIN))
    fp = observe(am, True, 0)[0].key
    out = am.acknowledge(fp, "ann", 1_000)
    assert statuses(out) == ["firing"] and out[0].value["acknowledged_by"] == "ann"
    assert am.tick(10 * MIN) == []  # no repeats once acknowledged
    resolved = observe(am, False, 11 * MIN)
    assert statuses(resolved) == ["resolved"]
    again = observe(am, True, 12 * MIN)
    assert again[0].value["acknowledged_by"] is None
    assert am.acknowledge("no-such-fingerprint", "ann", 0) == []


def test_silence_mutes_until_it_expires():
    am = AlertManager()
    sid = am.add_silence({"agent_name": "a"}, until_ms=2 * MIN, by="bob", comment="deploy", now_ms=0)
    assert [s.silence_id for s in am.silences(0)] == [sid]
    assert observe(am, True, 0) == []
    other = observe(am, True, 0, labels={"case": "c", "agent_name": "b"})
    assert statuses(other) == ["firing"]  # only matching alerts are muted
    assert statuses(am.tick(2 * MIN)) == ["firing"]  # expiry: still firing, now told
    assert am.silences(2 * MIN) == []


def test_silence_glob_and_early_removal_and_resolve_of_unseen_alert():
    am = AlertManager()
    sid = am.add_silence({"case": "c*", "severity": "warning"}, until_ms=10 * MIN, by="bob", now_ms=0)
    observe(am, True, 0)
    assert observe(am, False, MIN) == []  # never shown, so never resolved either
    observe(am, True, 2 * MIN)
    assert statuses(am.remove_silence(sid, 3 * MIN)) == ["firing"]
    with pytest.raises(ValueError):
        am.add_silence({}, until_ms=1, by="x")


def test_silenced_after_firing_still_resolves():
    am = AlertManager()
    observe(am, True, 0)
    am.add_silence({"agent_name": "a"}, until_ms=10 * MIN, by="bob", now_ms=1)
    assert statuses(observe(am, False, MIN)) == ["resolved"]


def rollback_alert(am: AlertManager, active: bool, now: int, task: str = "t"):
    return observe(
        am,
        active,
        now,
        source="rollback",
        labels={"agent_name": "a", "task_type": task},
        severity="critical",
        title="rolled back",
    )


def test_inhibition_by_critical_rollback_of_same_agent_task():
    am = AlertManager()
    assert statuses(rollback_alert(am, True, 0)) == ["firing"]
    assert observe(am, True, 1_000) == []  # assurance warning for a/t: inhibited
    degr = observe(am, True, 1_000, source="degradation", labels={"agent_name": "a"})
    assert degr == []  # agent-wide degradation warning of a: explained by the rollback too
    other_task = observe(am, True, 1_000, labels={"case": "c", "agent_name": "a", "task_type": "u"})
    assert statuses(other_task) == ["firing"]
    crit = observe(am, True, 1_000, labels={"case": "d", "agent_name": "a", "task_type": "t"}, severity="critical")
    assert statuses(crit) == ["firing"]  # only warnings are inhibited
    # the rollback alert resolves: the warnings it explained are told now
    out = rollback_alert(am, False, 2_000)
    assert sorted(statuses(out)) == ["firing", "firing", "resolved"]


def test_inhibition_by_an_alert_from_another_processor():
    am = AlertManager()
    ext = make_alert(
        source="rollback",
        status="firing",
        severity="critical",
        title="rb",
        labels={"agent_name": "a", "task_type": "t"},
        ts=0,
        starts_at=0,
        cause="x",
    ).value
    assert am.note_alert(ext) == []
    assert observe(am, True, 1_000) == []
    out = am.note_alert({**ext, "status": "resolved", "ts": 2_000})
    assert statuses(out) == ["firing"]


def test_active_alert_needs_value_threshold_sample_size():
    am = AlertManager()
    with pytest.raises(ValueError, match="sample_size"):
        observe(am, True, 0, evidence={"value": 1.0, "threshold": 2.0})
    with pytest.raises(ValueError, match="severity"):
        observe(am, True, 0, severity="loud")


def test_statistic_and_settings_version_are_carried():
    am = AlertManager()
    out = observe(am, True, 0, statistic="success_rate", settings_version="v7")
    assert out[0].value["labels"]["statistic"] == "success_rate"
    assert out[0].value["settings_version"] == "v7"


def test_pending_state_survives_a_restart():
    am = AlertManager()
    observe(am, True, 0, for_ms=30_000)
    sid = am.add_silence({"agent_name": "zzz"}, until_ms=10 * MIN, by="bob", now_ms=0)
    restored = AlertManager.from_dict(json.loads(json.dumps(am.to_dict())))
    assert restored.to_dict() == am.to_dict()
    assert [s.silence_id for s in restored.silences(0)] == [sid]
    assert statuses(restored.tick(30_000)) == ["firing"]


def test_round_trip_of_firing_flapping_and_inhibitor():
    am = AlertManager(AlertingSettings(flap_threshold=2))
    rollback_alert(am, True, 0)
    for i in range(6):
        observe(am, i % 2 == 0, i * 1_000, labels={"case": "x", "agent_name": "b"})
    data = json.loads(json.dumps(am.to_dict()))
    restored = AlertManager.from_dict(data, AlertingSettings(flap_threshold=2))
    assert restored.to_dict() == data
    assert observe(restored, True, 10_000) == []  # still inhibited after restart


def test_quiet_conditions_are_forgotten():
    am = AlertManager(AlertingSettings(flap_period_ms=MIN))
    observe(am, True, 0)
    observe(am, False, 1_000)
    am.tick(10 * MIN)
    assert am.to_dict()["states"] == []
