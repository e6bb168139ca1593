from reverify.processors.deadletters import DeadLetterMonitor, DeadLetterSettings
from reverify.schemas import encode


def test_fires_once_at_the_threshold_and_resolves_after_a_quiet_window():
    m = DeadLetterMonitor(DeadLetterSettings(threshold=10, window_ms=60_000))
    out = []
    for i in range(25):
        out += m.on_dead_letter("agent.outcomes", "decode" if i % 2 else "invalid", i * 100)
    firing = [e.value for e in out if e.value["status"] == "firing"]
    assert len(firing) == 1  # fired at the 10th, not re-notified for the next 15
    alert = firing[0]
    assert alert["source"] == "deadletter" and alert["labels"]["topic"] == "agent.outcomes"
    assert alert["evidence"]["value"] == 10.0 and alert["evidence"]["threshold"] == 10.0
    assert "decode 5" in alert["message"] and "invalid 5" in alert["message"]
    encode("Alert", alert)
    assert m.tick(50_000) == []  # still 25 within the window
    resolved = [e.value for e in m.tick(62_400)]
    assert [a["status"] for a in resolved] == ["resolved"]
    assert resolved[0]["fingerprint"] == alert["fingerprint"]


def test_topics_are_counted_apart_and_a_trickle_never_fires():
    m = DeadLetterMonitor(DeadLetterSettings(threshold=3, window_ms=1_000))
    out = []
    for i in range(20):
        out += m.on_dead_letter("agent.errors", "invalid", i * 600)  # at most 2 per window
    out += m.on_dead_letter("agent.metrics", "decode", 20_000)
    assert out == []
