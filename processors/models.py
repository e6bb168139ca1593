"""The model monitor: how well an agent's model predicts, per model version, from outcomes judged by feedback.

An outcome may carry the agent's ``prediction`` (a score or a class) and ``model_version``; its feedback (see
:mod:`processors.feedback`) may carry the true ``label``. Each judged pair goes into a rolling window of the last
``window`` pairs of its (agent, model version), and every ``report_every`` pairs a ``ModelReport`` says:

* the kind of model, from the window: ``probabilistic`` (scores in [0, 1], labels 0/1), ``classification``
  (classes), or ``regression`` (any other numbers);
* ``accuracy`` (a score counts as class 1 at >= 0.5) or, for regression, ``mae`` (mean absolute error);
* for scores, the Brier score (mean squared difference of score and label; Brier 1950) and the expected
  calibration error over ``bins`` equal-width score bins, ``ECE = sum_b n_b / N * |mean score_b - share of 1s_b|``
  (Naeini et al. 2015; Guo et al. 2017), with the bins themselves (a reliability diagram);
* the latest PSI and calibrated alarm of the prediction's drift series ``prediction:VERSION`` (the drift monitor,
  :mod:`processors.drift`, watches the scores as they are published, before any label);
* ``baseline_accuracy``: the accuracy of the version's first ``baseline_size`` judged pairs, and ``alarm`` when
  the window's accuracy is below it by more than ``accuracy_tolerance`` (relative: the seed's degradation rule for
  a success rate, a drop > 10 %), with at least ``min_evidence`` pairs in the window. The alarm is an alert of
  source ``model`` through the alert manager (pending, firing, resolved, silences, notifications).

Why a relative drop of 10 % on windows of 500 does not false-alarm: at 90 % accuracy a window's accuracy has a
standard deviation of sqrt(0.9 * 0.1 / 500) = 1.3 points, the baseline's (500 pairs) the same, so a 9-point drop
is 4.7 standard deviations of their difference; at 70 % (a 7-point drop, 2.9 points sd) 2.4 sd. With smaller
windows or a lower accuracy, raise ``accuracy_tolerance`` or ``window``.

Examples
--------
>>> monitor = ModelMonitor(ModelSettings(window=100, report_every=50, baseline_size=50, min_evidence=50))
>>> out = []
>>> for i in range(100):
...     out += monitor.observe("a", "m1", (i % 10) / 10, float(i % 10 >= 5), i, f"f{i}")
>>> [(r.value["kind"], r.value["judged"], r.value["accuracy"], round(r.value["brier"], 3)) for r in out]
[('probabilistic', 50, 1.0, 0.085), ('probabilistic', 100, 1.0, 0.085)]
>>> ModelMonitor.from_dict(monitor.to_dict(), monitor.settings).to_dict() == monitor.to_dict()
True

References
----------
Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly Weather Review 78(1).
Naeini, M. P., Cooper, G. and Hauskrecht, M. (2015). Obtaining well calibrated probabilities using Bayesian
binning. AAAI. Guo, C. et al. (2017). On calibration of modern neural networks. ICML.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reverify.processors.alerting import AlertManager
from reverify.processors.base import Emission, derive_id
from reverify.schemas.fields import ALERT_SEVERITIES

__all__ = [
    "REPORT_TOPIC",
    "ModelMonitor",
    "ModelSettings",
    "brier_score",
    "calibration_bins",
    "expected_calibration_error",
    "prediction_feature",
]

REPORT_TOPIC = "model.reports"
Value = float | str


@dataclass(frozen=True)
class ModelSettings:
    """``[models]`` in reverify.toml."""

    window: int = 500
    report_every: int = 50
    baseline_size: int = 500
    min_evidence: int = 100
    accuracy_tolerance: float = 0.10
    bins: int = 10
    severity: str = "warning"

    def __post_init__(self) -> None:
        if min(self.window, self.report_every, self.baseline_size, self.min_evidence, self.bins) < 1:
            raise ValueError("models.window, report_every, baseline_size, min_evidence and bins must be at least 1")
        if not 0.0 < self.accuracy_tolerance < 1.0:
            raise ValueError("models.accuracy_tolerance is a relative drop in (0, 1), e.g. 0.10")
        if self.severity not in ALERT_SEVERITIES:
            raise ValueError(f"models.severity must be one of {', '.join(ALERT_SEVERITIES)}")


def prediction_feature(model_version: str | None) -> str:
    """The drift series of a model version's predictions.

    >>> prediction_feature("m2"), prediction_feature(None)
    ('prediction:m2', 'prediction')
    """
    return f"prediction:{model_version}" if model_version else "prediction"


def _is_score_pair(prediction: Value, label: Value) -> bool:
    return isinstance(prediction, float) and 0.0 <= prediction <= 1.0 and label in (0.0, 1.0)


def _hit(prediction: Value, label: Value) -> bool | None:
    """Whether the prediction was right; ``None`` for a regression pair (numbers that are not score and 0/1)."""
    if isinstance(prediction, str) or isinstance(label, str):
        return str(prediction) == str(label)
    if _is_score_pair(prediction, label):
        return (prediction >= 0.5) == (label == 1.0)
    return None


def brier_score(scores: Sequence[float], labels: Sequence[float]) -> float:
    """Mean of ``(score - label) ** 2`` over 0/1 labels.

    >>> round(brier_score([0.9, 0.2], [1.0, 0.0]), 6)
    0.025
    """
    return sum((s - y) ** 2 for s, y in zip(scores, labels, strict=True)) / len(scores)


def calibration_bins(scores: Sequence[float], labels: Sequence[float], bins: int = 10) -> list[dict[str, Any]]:
    """The reliability diagram: per equal-width score bin (the last one closed), how many, mean score, share of 1s.

    >>> [(b["count"], b["mean_score"], b["positive_rate"]) for b in calibration_bins([0.05, 0.15, 0.12], [0, 1, 0], 2)]
    [(3, 0.10666666666666667, 0.3333333333333333), (0, 0.0, 0.0)]
    """
    count, score_sum, positive = [0] * bins, [0.0] * bins, [0.0] * bins
    for s, y in zip(scores, labels, strict=True):
        b = min(int(s * bins), bins - 1)
        count[b] += 1
        score_sum[b] += s
        positive[b] += y
    return [
        {
            "lower": b / bins,
            "upper": (b + 1) / bins,
            "count": count[b],
            "mean_score": score_sum[b] / count[b] if count[b] else 0.0,
            "positive_rate": positive[b] / count[b] if count[b] else 0.0,
        }
        for b in range(bins)
    ]


def expected_calibration_error(scores: Sequence[float], labels: Sequence[float], bins: int = 10) -> float:
    """``sum_b n_b / N * |mean score_b - share of 1s_b|`` over equal-width bins.

    >>> round(expected_calibration_error([0.9] * 10, [1.0] * 8 + [0.0] * 2), 6)
    0.1
    """
    return _ece(calibration_bins(scores, labels, bins), len(scores))


def _ece(table: Sequence[Mapping[str, Any]], n: int) -> float:
    return sum(b["count"] * abs(b["mean_score"] - b["positive_rate"]) for b in table) / n


class _Series:
    """One (agent, model version): the window of judged pairs, the baseline's hits, the latest prediction drift."""

    __slots__ = ("baseline_hits", "baseline_n", "judged", "pairs", "psi", "drift_alarm")

    def __init__(self, window: int) -> None:
        self.pairs: deque[tuple[Value, Value]] = deque(maxlen=window)
        self.judged = 0
        self.baseline_hits = 0
        self.baseline_n = 0
        self.psi: float | None = None
        self.drift_alarm = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": [list(p) for p in self.pairs],
            "judged": self.judged,
            "baseline": [self.baseline_hits, self.baseline_n],
            "psi": self.psi,
            "drift_alarm": self.drift_alarm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], window: int) -> _Series:
        series = cls(window)
        series.pairs.extend((p, y) for p, y in data["pairs"])
        series.judged = int(data["judged"])
        series.baseline_hits, series.baseline_n = (int(x) for x in data["baseline"])
        series.psi = data.get("psi")
        series.drift_alarm = bool(data.get("drift_alarm", False))
        return series


class ModelMonitor:
    """The model series of one agent (or more); see the module docstring."""

    def __init__(self, settings: ModelSettings | None = None, alerts: AlertManager | None = None) -> None:
        self.settings = settings or ModelSettings()
        self.alerts = alerts if alerts is not None else AlertManager()
        self.series: dict[tuple[str, str], _Series] = {}

    def _series(self, agent: str, version: str) -> _Series:
        series = self.series.get((agent, version))
        if series is None:
            series = self.series[(agent, version)] = _Series(self.settings.window)
        return series

    def observe(self, agent: str, version: str | None, prediction: Value, label: Value, ts: int, cause: str):
        """One judged pair (the outcome's prediction, its feedback's label): a ModelReport every ``report_every``
        pairs, and the accuracy alert's changes."""
        version = version or ""
        series = self._series(agent, version)
        series.pairs.append((prediction, label))
        series.judged += 1
        s = self.settings
        if series.baseline_n < s.baseline_size:
            hit = _hit(prediction, label)
            if hit is not None:
                series.baseline_n += 1
                series.baseline_hits += hit
        if series.judged % s.report_every:
            return []
        return self._report(agent, version, series, ts, cause)

    def note_drift(self, agent: str, version: str, report: Mapping[str, Any]) -> None:
        """The latest drift report of the version's prediction series."""
        series = self._series(agent, version)
        series.psi = float(report["psi"])
        series.drift_alarm = bool(report["alarm"])

    def _report(self, agent: str, version: str, series: _Series, ts: int, cause: str) -> list[Emission]:
        s = self.settings
        pairs = list(series.pairs)
        value = {
            "event_id": derive_id("model-report", agent, version, series.judged, cause),
            "ts": ts,
            "agent_name": agent,
            "model_version": version,
            "window_size": len(pairs),
            "judged": series.judged,
            "tolerance": s.accuracy_tolerance,
            "prediction_psi": series.psi,
            "prediction_drift": series.drift_alarm,
            "baseline_size": series.baseline_n,
            **_metrics(pairs, s.bins),
        }
        baseline = series.baseline_hits / series.baseline_n if series.baseline_n >= s.baseline_size else None
        accuracy = value["accuracy"]
        drop = (baseline - accuracy) / baseline if baseline and accuracy is not None else None
        alarm = drop is not None and len(pairs) >= s.min_evidence and drop > s.accuracy_tolerance
        reason = ""
        if alarm:
            reason = (
                f"accuracy {accuracy:.3f} over the last {len(pairs)} judged predictions is {drop:.1%} below the "
                f"baseline {baseline:.3f} (tolerance {s.accuracy_tolerance:.0%})"
            )
        value.update(baseline_accuracy=baseline, accuracy_drop=drop, alarm=alarm, reason=reason)
        out = [Emission(REPORT_TOPIC, f"{agent}/{version}", "ModelReport", value)]
        if drop is not None:
            evidence = {"value": accuracy, "threshold": baseline * (1 - s.accuracy_tolerance)}
            evidence.update(sample_size=float(len(pairs)), baseline=baseline, drop=drop)
            out += self.alerts.observe(
                "model",
                {"agent_name": agent, "model_version": version},
                alarm,
                ts,
                severity=s.severity,
                title=f"{agent}: model {version or '(unversioned)'} accuracy dropped below its baseline",
                message=reason or f"accuracy {accuracy:.3f}, baseline {baseline:.3f}",
                evidence=evidence,
                statistic="accuracy",
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f"{a}\x1f{v}": series.to_dict() for (a, v), series in self.series.items()}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], settings: ModelSettings | None = None, alerts: AlertManager | None = None
    ) -> ModelMonitor:
        monitor = cls(settings, alerts)
        for key, raw in data.items():
            agent, _, version = key.partition("\x1f")
            monitor.series[(agent, version)] = _Series.from_dict(raw, monitor.settings.window)
        return monitor


def _metrics(pairs: Iterable[tuple[Value, Value]], bins: int) -> dict[str, Any]:
    """The kind of model the window shows and its metrics (those that do not apply are None)."""
    pairs = list(pairs)
    out: dict[str, Any] = {"accuracy": None, "mae": None, "brier": None, "ece": None, "calibration": []}
    if any(isinstance(p, str) or isinstance(y, str) for p, y in pairs):
        out["kind"] = "classification"
        out["accuracy"] = sum(str(p) == str(y) for p, y in pairs) / len(pairs)
    elif all(_is_score_pair(p, y) for p, y in pairs):
        scores, labels = [float(p) for p, _ in pairs], [float(y) for _, y in pairs]
        out["kind"] = "probabilistic"
        out["accuracy"] = sum((s >= 0.5) == (y == 1.0) for s, y in zip(scores, labels, strict=True)) / len(pairs)
        out["brier"] = brier_score(scores, labels)
        out["calibration"] = calibration_bins(scores, labels, bins)
        out["ece"] = _ece(out["calibration"], len(pairs))
    else:
        out["kind"] = "regression"
        out["mae"] = sum(abs(float(p) - float(y)) for p, y in pairs) / len(pairs)
    return out
