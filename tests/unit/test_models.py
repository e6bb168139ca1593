"""The model monitor (processors.models): its metrics against a plain numpy computation, its accuracy alarm."""

from __future__ import annotations

import random

import numpy as np
import pytest
from reverify.processors.models import (
    ModelMonitor,
    ModelSettings,
    brier_score,
    calibration_bins,
    expected_calibration_error,
)


def _numpy_ece(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    which = np.minimum((scores * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(scores[inside].mean() - labels[inside].mean())
    return total / len(scores)


@pytest.mark.parametrize("seed", range(5))
def test_brier_and_ece_equal_a_plain_numpy_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.beta(2, 2, 500)
    scores[:5] = [0.0, 1.0, 0.1, 0.5, 0.9999]  # the edges of the bins
    labels = (rng.random(500) < scores**1.5).astype(float)  # a miscalibrated model
    assert brier_score(list(scores), list(labels)) == pytest.approx(np.mean((scores - labels) ** 2), rel=1e-12)
    ece = expected_calibration_error(list(scores), list(labels))
    assert ece == pytest.approx(_numpy_ece(scores, labels), rel=1e-12) and ece > 0.02
    table = calibration_bins(list(scores), list(labels))
    assert [b["count"] for b in table] == list(np.bincount(np.minimum((scores * 10).astype(int), 9), minlength=10))


def _feed(monitor: ModelMonitor, accuracy: float, n: int, start: int, rng: random.Random) -> list:
    out = []
    for i in range(start, start + n):
        label = float(rng.random() < 0.5)
        right = rng.random() < accuracy
        score = rng.uniform(0.55, 1.0) if (label == 1.0) == right else rng.uniform(0.0, 0.45)
        out += monitor.observe("a", "m1", score, label, i, f"f{i}")
    return out


def test_a_drop_of_accuracy_below_the_baseline_beyond_the_tolerance_fires_a_model_alert_and_recovery_resolves() -> None:
    rng = random.Random(7)
    monitor = ModelMonitor(ModelSettings())
    steady = _feed(monitor, 0.9, 3000, 0, rng)
    reports = [e.value for e in steady if e.record_type == "ModelReport"]
    assert len(reports) == 60 and not any(r["alarm"] for r in reports)  # 25 looks on a full window: no false alarm
    assert reports[-1]["baseline_accuracy"] == pytest.approx(0.9, abs=0.03)
    assert not [e for e in steady if e.record_type == "Alert"]
    dropped = _feed(monitor, 0.7, 1000, 3000, rng)
    alerts = [e.value for e in dropped if e.record_type == "Alert"]
    assert [(a["source"], a["status"]) for a in alerts] == [("model", "firing")]
    assert alerts[0]["labels"] == {"agent_name": "a", "model_version": "m1", "statistic": "accuracy"}
    fired = next(r for r in (e.value for e in dropped if e.record_type == "ModelReport") if r["alarm"])
    assert fired["accuracy_drop"] > 0.1 and "below the baseline" in fired["reason"]
    recovered = _feed(monitor, 0.9, 1000, 4000, rng)
    assert [a.value["status"] for a in recovered if a.record_type == "Alert"] == ["resolved"]


def test_classes_and_regression_values_get_accuracy_and_mae() -> None:
    monitor = ModelMonitor(ModelSettings(report_every=4))
    out = []
    for i, (p, y) in enumerate([("spam", "spam"), ("ham", "spam"), ("ham", "ham"), ("spam", "spam")]):
        out += monitor.observe("a", "clf", p, y, i, f"c{i}")
    for i, (p, y) in enumerate([(3.0, 2.5), (10.0, 12.0), (0.5, 0.5), (1.0, 2.0)]):
        out += monitor.observe("a", "reg", p, y, i, f"r{i}")
    (clf, reg) = [e.value for e in out if e.record_type == "ModelReport"]
    assert (clf["kind"], clf["accuracy"], clf["brier"]) == ("classification", 0.75, None)
    assert (reg["kind"], reg["accuracy"], reg["mae"]) == ("regression", None, 0.875)


def test_the_pipeline_judges_predictions_by_their_feedback_labels_for_reports_cases_and_drift() -> None:
    from reverify.processors.assurance import parse_cases
    from reverify.processors.pipeline import AgentPipeline, PipelineConfig

    cases = parse_cases([{"name": "calibrated", "evidence": "ece", "threshold_max": 0.05, "min_evidence": 1}])
    p = AgentPipeline("a", PipelineConfig(cases=tuple(cases), models=ModelSettings(report_every=100)))
    rng = random.Random(3)
    out = []
    for i in range(300):
        score = rng.random()
        out += p.on_event("AgentOutcome", {"event_id": f"o{i}", "ts": i, "agent_name": "a", "task_type": "t",
            "variant_id": "v1", "latency_ms": 1.0, "cost_usd": 0.0, "features": {}, "attributes": {},
            "awaiting_feedback": True, "success": False, "reward": 0.0, "prediction": score,
            "model_version": "m1"}, (0, i))  # fmt: skip
        label = float(rng.random() < score**3)  # overconfident: badly calibrated
        out += p.on_event("AgentFeedback", {"event_id": f"f{i}", "ts": i, "agent_name": "a", "outcome_id": f"o{i}",
            "success": True, "reward": 1.0, "label": label, "attributes": {}}, (0, i))  # fmt: skip
    reports = [e.value for e in out if e.record_type == "ModelReport"]
    assert [r["judged"] for r in reports] == [100, 200, 300] and reports[-1]["kind"] == "probabilistic"
    verdicts = [e.value for e in out if e.record_type == "AssuranceResult"]
    assert [(v["verdict"], v["value"]) for v in verdicts] == [("failed", reports[0]["ece"])]
    assert ("a", "prediction:m1", None) in p.drift.monitors  # the scores' drift series, fed as they were published
