"""Notifications' functional core: configuration, the route tree, aggregation groups and timing, payloads."""

from __future__ import annotations

import json
from email import message_from_bytes

import pytest
from reverify.processors.alerting import Silence
from reverify.processors.base import make_alert
from reverify.processors.notify import NotificationGroups, NotifyConfigError, parse_notify_config
from reverify.processors.notify.grouping import Notification
from reverify.processors.notify.payloads import (
    alertmanager_body,
    delivery_failed_alert,
    email_message,
    pagerduty_body,
    signature,
    slack_body,
    webhook_body,
)
from reverify.processors.notify.routing import alert_labels, match_routes
from reverify.streams.notify import OffsetTracker

SEC, MIN = 1_000, 60_000
EV = {"value": 0.61, "threshold": 0.8, "sample_size": 120.0}


def alert(agent: str = "enricher", status: str = "firing", ts: int = 0, source: str = "rollback", **kw):
    labels = {"agent_name": agent, "task_type": "lookup", "statistic": "success_rate", **kw.pop("labels", {})}
    return make_alert(
        source=source,
        status=status,
        severity=kw.pop("severity", "critical"),
        title=f"{agent} degraded",
        labels=labels,
        ts=ts,
        starts_at=kw.pop("starts_at", 0),
        cause=(status, ts),
        message="success fell below the baseline",
        evidence=EV,
        ends_at=ts if status == "resolved" else None,
        acknowledged_by=kw.pop("acknowledged_by", None),
    ).value


def config(routes=None, **receivers_extra):
    receivers = [
        {"name": "ops", "webhook": "http://hooks/ops"},
        {"name": "pager", "pagerduty_routing_key": "R0UT1NG"},
        {"name": "chat", "slack": "https://hooks.slack.com/services/T/B/X"},
    ]
    return parse_notify_config({"receivers": receivers, "routes": routes or [], **receivers_extra})


def route(**kw):
    return {"receiver": "ops", "group_by": ["agent_name"], "group_wait": "30s", "group_interval": "5m",
            "repeat_interval": "1h", **kw}  # fmt: skip


# ---------------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"receivers": [{"name": "ops", "webhok": "http://x"}]}, "receivers[0] (ops): 'webhok' is not a receiver setting; did you mean 'webhook'?"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "routes": [{"receiver": "opps"}]}, "routes[0]: receiver = 'opps' is not a receiver; known: ops"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "routes": [{"receiver": "ops", "group_wiat": "1s"}]}, "routes[0]: 'group_wiat' is not a route setting; did you mean 'group_wait'?"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "routes": [{"receiver": "ops", "routes": [{"receiver": "x"}]}]}, "routes[0].routes[0]: receiver = 'x' is not a receiver"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "routes": [{"receiver": "ops", "group_wait": "soon"}]}, "routes[0]: group_wait = 'soon' is not allowed"),
        ({"receivers": [{"name": "ops", "webhook": "ftp://x"}]}, "receivers[0] (ops): webhook = 'ftp://x' is not allowed"),
        ({"receivers": [{"webhook": "http://x"}]}, "receivers[0]: name is missing"),
        ({"receivers": [{"name": "ops"}]}, "receivers[0] (ops): no destination"),
        ({"receivers": [{"name": "ops", "email": "x"}]}, "receivers[0] (ops): email 'x' is not an e-mail address"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "routes": [{"receiver": "ops", "match_re": {"a": "("}}]}, "routes[0]: match_re.a = '(' is not a regular expression"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "smtp": {"hots": "mail"}}, "[smtp]: 'hots' is not a setting; did you mean 'host'?"),
        ({"receivers": [{"name": "ops", "webhook": "http://x"}], "notify": {"attempts": 0}}, "[notify] attempts = 0 is not allowed"),
    ],
)  # fmt: skip
def test_every_mistake_names_its_receiver_or_route_and_field(sections, message):
    with pytest.raises(NotifyConfigError) as info:
        parse_notify_config(sections)
    assert any(line.startswith(message) for line in info.value.errors), info.value.errors


def test_mistakes_are_reported_together():
    with pytest.raises(NotifyConfigError) as info:
        parse_notify_config({"receivers": [{"name": "a", "slak": "x"}], "routes": [{"receiver": "b", "contine": True}]})
    assert len(info.value.errors) == 3


def test_routes_inherit_from_parent_and_defaults_come_from_notify_section():
    cfg = parse_notify_config(
        {
            "receivers": [{"name": "ops", "webhook": "http://x"}, {"name": "db", "email": ["a@b.c", "d@e.f"]}],
            "notify": {"group_wait": "5s", "group_by": ["alertname"]},
            "routes": [
                {"receiver": "ops", "repeat_interval": "2h", "routes": [{"match": {"team": "db"}, "receiver": "db"}]}
            ],
        }
    )
    parent = cfg.routes[0]
    child = parent.routes[0]
    assert (parent.group_wait_ms, parent.group_by, parent.repeat_interval_ms) == (5_000, ("alertname",), 7_200_000)
    assert (child.receiver, child.group_wait_ms, child.repeat_interval_ms, child.path) == (
        "db",
        5_000,
        7_200_000,
        "routes[0].routes[0]",
    )
    assert cfg.receivers["db"].email == ("a@b.c", "d@e.f") and cfg.receivers["db"].channels == ("email",)


def test_without_routes_every_receiver_hears_everything():
    cfg = config()
    labels = alert_labels(alert())
    assert [r.receiver for r in match_routes(cfg.routes, labels)] == ["ops", "pager", "chat"]
    assert parse_notify_config({}).enabled is False


# ---------------------------------------------------------------------------------------------- routing


def test_first_match_wins_unless_continue_and_children_refine():
    cfg = config(
        [
            {"match": {"severity": "critical"}, "receiver": "pager", "continue": True},
            {"match_re": {"agent_name": "enrich.*"}, "receiver": "ops", "routes": [{"match": {"task_type": "lookup"}, "receiver": "chat"}]},
            {"receiver": "ops"},
        ]
    )  # fmt: skip
    receivers = lambda a: [r.receiver for r in match_routes(cfg.routes, alert_labels(a))]  # noqa: E731
    assert receivers(alert()) == ["pager", "chat"]  # critical continues; the enricher branch's child is deeper
    assert receivers(alert(labels={"task_type": "other"})) == ["pager", "ops"]  # no child: the parent keeps it
    assert receivers(alert("mailer", severity="warning")) == ["ops"]  # the catch-all
    assert receivers(alert("xenricher", severity="warning")) == ["ops"]  # match_re is anchored at both ends


def test_labels_carry_alertname_source_severity_and_the_alerts_own():
    labels = alert_labels(alert())
    assert {k: labels[k] for k in ("alertname", "source", "severity", "agent_name", "task_type")} == {
        "alertname": "rollback", "source": "rollback", "severity": "critical", "agent_name": "enricher", "task_type": "lookup",
    }  # fmt: skip
    assert alert_labels({**alert(), "labels": {"alertname": "Custom"}})["alertname"] == "Custom"


# ---------------------------------------------------------------------------------------------- grouping and timing


def groups_for(*routes):
    return NotificationGroups(config(list(routes) or [route()]).routes)


def test_group_wait_gathers_alerts_that_come_together():
    g = groups_for()
    g.offer(alert("a", labels={"variant_id": "v1"}), 0, token=[0, 1])
    g.offer(alert("a", labels={"variant_id": "v2"}), 10 * SEC, token=[1, 1])
    g.offer(alert("b"), 10 * SEC, token=[0, 2])
    assert g.advance(29 * SEC) == [] and g.next_due_ms() == 30 * SEC
    notes = g.advance(30 * SEC)
    assert [(n.group_labels, len(n.alerts), n.reason) for n in notes] == [({"agent_name": "a"}, 2, "new")]
    assert sorted(notes[0].tokens) == [[0, 1], [1, 1]]
    assert [n.group_labels for n in g.advance(40 * SEC)] == [{"agent_name": "b"}]


def test_changes_wait_for_group_interval_and_carry_the_whole_group():
    g = groups_for()
    g.offer(alert("a", labels={"variant_id": "v1"}), 0)
    [first] = g.advance(30 * SEC)
    g.offer(alert("a", labels={"variant_id": "v2"}), MIN)
    assert g.advance(5 * MIN) == []
    [second] = g.advance(30 * SEC + 5 * MIN)
    assert second.reason == "update" and len(second.alerts) == 2 and second.key != first.key


def test_repeat_interval_resends_unchanged_firing_groups_with_a_new_key():
    g = groups_for()
    g.offer(alert(), 0)
    [first] = g.advance(30 * SEC)
    g.offer(alert(ts=10 * MIN), 10 * MIN)  # the worker's own repeat: nothing new for the receiver
    assert g.advance(30 * SEC + 59 * MIN) == []
    [repeat] = g.advance(30 * SEC + 60 * MIN)
    assert repeat.reason == "repeat" and repeat.key != first.key and len(repeat.alerts) == 1
    [again] = g.advance(30 * SEC + 120 * MIN)
    assert again.key != repeat.key


def test_resolve_is_delivered_once_and_the_group_is_forgotten():
    g = groups_for()
    g.offer(alert(), 0)
    g.advance(30 * SEC)
    g.offer(alert(status="resolved", ts=2 * MIN), 2 * MIN)
    [resolved] = g.advance(30 * SEC + 5 * MIN)
    assert resolved.status == "resolved" and resolved.alerts[0]["status"] == "resolved"
    assert g.advance(10 * 60 * MIN) == [] and g.to_dict()["groups"] == []


def test_a_resolve_after_a_restart_is_still_delivered():
    g = groups_for()  # a fresh process: it never told anyone the alert fired
    assert g.offer(alert(status="resolved"), 0, token=[0, 3]) == 1
    [note] = g.advance(30 * SEC)
    assert note.status == "resolved" and note.tokens == [[0, 3]]


def test_ack_reaches_pagerduty_as_acknowledge_and_stops_repeats():
    g = groups_for()
    g.offer(alert(), 0)
    g.advance(30 * SEC)
    g.offer(alert(ts=MIN, acknowledged_by="alice"), MIN)
    [ack] = g.advance(30 * SEC + 5 * MIN)
    assert ack.reason == "ack"
    assert pagerduty_body(ack, "K")["event_action"] == "acknowledge"
    assert g.advance(30 * SEC + 10 * 60 * MIN) == [] and g.next_due_ms() is None


def test_silenced_alerts_are_not_sent_but_their_resolve_is_when_people_saw_them_fire():
    g = groups_for()
    g.add_silence(Silence("s1", {"agent_name": "quiet"}, until_ms=60 * MIN, by="bob"))
    assert g.offer(alert("quiet"), 0, token=[0, 1]) == 0  # muted before anyone was told: nothing to send
    g.offer(alert("loud"), 0)
    [loud] = g.advance(30 * SEC)
    g.add_silence(Silence("s2", {"agent_name": "loud"}, until_ms=600 * MIN, by="bob"))
    assert g.advance(30 * SEC + 2 * 60 * MIN) == []  # no repeats while silenced
    g.offer(alert("loud", status="resolved", ts=3 * 60 * MIN), 3 * 60 * MIN, token=[0, 9])
    [resolved] = g.advance(3 * 60 * MIN + 5 * MIN)
    assert resolved.status == "resolved" and resolved.tokens == [[0, 9]]


def test_a_firing_alert_silenced_while_waiting_releases_its_offset():
    g = groups_for()
    g.offer(alert("a"), 0, token=[2, 5])
    g.add_silence(Silence("s", {"agent_name": "a"}, until_ms=MIN, by="bob"))
    assert g.advance(30 * SEC) == [] and g.released() == [[2, 5]]


def test_notify_alerts_skip_the_receiver_they_are_about():
    g = NotificationGroups(config().routes)
    failed = delivery_failed_alert("ops", "webhook", "HTTP 500", 4, 0, "firing").value
    assert g.offer(failed, 0) == 2
    assert sorted(n.receiver for n in g.advance(30 * SEC)) == ["chat", "pager"]


def test_state_round_trips_and_keys_are_stable_for_the_same_content():
    def run(g):
        g.offer(alert("a"), 0, token=[0, 1])
        g.offer(alert("b"), 5 * SEC, token=[0, 2])
        return g

    g = run(groups_for())
    restored = NotificationGroups.from_dict(json.loads(json.dumps(g.to_dict())), g.routes)
    mine, theirs = g.advance(MIN), restored.advance(MIN)
    assert [n.key for n in mine] == [n.key for n in theirs] == [n.key for n in run(groups_for()).advance(2 * MIN)]


def test_offsets_commit_below_the_oldest_alert_awaiting_delivery():
    t = OffsetTracker()
    t.consumed(0, 0, refs=1)
    t.consumed(0, 1, refs=0)
    t.consumed(1, 4, refs=2)
    assert t.positions() == {0: 0, 1: 4}
    t.release((1, 4))
    assert t.positions() == {0: 0, 1: 4}
    t.release((1, 4))
    t.release((0, 0))
    assert t.positions() == {0: 2, 1: 5}


# ---------------------------------------------------------------------------------------------- payloads


def notification(*alerts, reason="new"):
    alerts = alerts or (alert(),)
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return Notification("ops", "routes[0]", 'routes[0]:{agent_name="enricher"}', {"agent_name": "enricher"},
                        list(alerts), status, reason, "key-1", ts=1_700_000_000_000, repeat_interval_ms=3_600_000)  # fmt: skip


def test_webhook_body_is_alertmanagers_version_4():
    resolved = alert("enricher", status="resolved", ts=1_700_000_060_000, labels={"variant_id": "v2"})
    body = webhook_body(notification(alert(), resolved), console_url="http://console:6066/")
    # the fields of Alertmanager's notify/webhook.Message and template.Data / template.Alert
    assert set(body) == {"receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations",
                         "externalURL", "version", "groupKey", "truncatedAlerts"}  # fmt: skip
    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "ops")
    assert body["groupKey"] == 'routes[0]:{agent_name="enricher"}' and body["groupLabels"] == {"agent_name": "enricher"}
    first, second = body["alerts"]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert first["endsAt"] == "0001-01-01T00:00:00Z" and second["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert first["startsAt"] == "1970-01-01T00:00:00.000Z"
    ann = first["annotations"]
    assert ann["evidence"] == "value 0.61 vs threshold 0.8 (success_rate, n=120)"
    assert (ann["value"], ann["threshold"], ann["sample_size"], ann["statistic"]) == (
        "0.61",
        "0.8",
        "120",
        "success_rate",
    )
    assert ann["console"] == f"http://console:6066/alerts?fingerprint={first['fingerprint']}"
    assert body["commonLabels"]["agent_name"] == "enricher" and "variant_id" not in body["commonLabels"]
    assert json.loads(json.dumps(body)) == body


def test_slack_message_is_readable_with_the_evidence():
    body = slack_body(notification(alert(acknowledged_by="alice")), console_url="http://c")
    text = json.dumps(body)
    assert body["text"].startswith("[FIRING:1] enricher")
    assert "value 0.61 vs threshold 0.8" in text and "Acknowledged by alice" in text and "<http://c/alerts?" in text
    assert body["blocks"][0]["type"] == "header"


def test_pagerduty_trigger_and_resolve_share_the_groups_dedup_key():
    trigger = pagerduty_body(notification(), "R0UT1NG", console_url="http://c")
    resolve = pagerduty_body(notification(alert(status="resolved", ts=5)), "R0UT1NG")
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] and len(trigger["dedup_key"]) == 64
    payload = trigger["payload"]
    assert (payload["severity"], payload["source"], payload["class"], payload["group"]) == (
        "critical",
        "enricher",
        "rollback",
        "lookup",
    )
    assert payload["custom_details"]["alerts"][0]["evidence"].startswith("value 0.61")
    assert trigger["links"][0]["href"].startswith("http://c/alerts?fingerprint=")


def test_alertmanager_forward_keeps_firing_alerts_until_the_next_repeat():
    [firing] = alertmanager_body(notification(), valid_for_ms=7_200_000)
    [resolved] = alertmanager_body(notification(alert(status="resolved", ts=1_700_000_000_000)))
    assert firing["endsAt"] == "2023-11-15T00:13:20.000Z" and firing["labels"]["alertname"] == "rollback"
    assert resolved["endsAt"] == "2023-11-14T22:13:20.000Z"


def test_email_has_alertmanagers_subject_and_the_idempotency_key():
    msg = message_from_bytes(email_message(notification(), "r@x", ["a@b.c"]).as_bytes())
    assert msg["Subject"].startswith("[FIRING:1] enricher") and msg["Message-ID"] == "<key-1@reverify>"
    assert "Evidence: value 0.61" in msg.get_payload()


def test_signature_is_hmac_sha256_of_the_body():
    import hashlib
    import hmac

    body = b'{"a":1}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
