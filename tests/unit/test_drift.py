"""Drift processor: exact statistics, calibrated false alarms and delays on seeded streams, alert lifecycle, state.

The streams are simulated with numpy; every asserted alarm comes from the real
:class:`DriftMonitor`. river's ADWIN runs on the same streams for comparison.
"""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
from reverify.processors.base import fingerprint
from reverify.processors.drift import (
    CategoricalDriftMonitor,
    DriftMonitor,
    DriftProcessor,
    DriftSettings,
    psi,
    update_many,
)
from reverify.processors.drift.looks import _SEARCH_TOGETHER_FROM
from reverify.schemas import encode
from scipy import stats

SETTINGS = DriftSettings()
SEEDS = range(100)
T0 = 1_700_000_000_000


def run_monitor(values: np.ndarray, settings: DriftSettings = SETTINGS) -> tuple[DriftMonitor, list[int]]:
    """Feed ``values``; return the monitor and the 0-based indices at which its alarm fired."""
    m = DriftMonitor(settings, agent_name="a", feature="f")
    fired = []
    update = m.update
    for i, x in enumerate(values.tolist()):
        if update(x, T0 + i) is not None and m.transition == "fired":
            fired.append(i)
    return m, fired


def adwin_detections(values: np.ndarray) -> list[int]:
    from river.drift import ADWIN

    det = ADWIN()
    out = []
    for i, x in enumerate(values.tolist()):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


def shifted_stream(seed: int, mean: float = 50.0, sd: float = 10.0, pre: int = 2000, post: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(10_000 + seed)
    return np.concatenate([rng.normal(50, 10, pre), rng.normal(mean, sd, post)])


def delays(kind: dict, pre: int = 2000) -> tuple[list[int], int]:
    """Delays (shifted values consumed) per seed for a shift at ``pre``, and false alarms before it."""
    out, false = [], 0
    for seed in SEEDS:
        _, fired = run_monitor(shifted_stream(seed, **kind))
        false += sum(f < pre for f in fired)
        after = [f for f in fired if f >= pre]
        out.append(after[0] - pre + 1 if after else 10**9)
    return out, false


# -- exact statistics -------------------------------------------------------------------------------------------------


def reference_psi(base: np.ndarray, window: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    edges = np.quantile(base, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf  # open outer bins
    b = np.histogram(base, edges)[0] / len(base)
    c = np.histogram(window, edges)[0] / len(window)
    b, c = np.where(b > 0, b, eps), np.where(c > 0, c, eps)
    return float(np.sum((c - b) * np.log(c / b)))


@pytest.mark.parametrize("kind", ["normal", "shifted", "ties"])
def test_psi_and_ks_equal_numpy_scipy(kind: str) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(50, 10, 1000)
    later = rng.normal(50 if kind != "shifted" else 54, 10, 1730)
    if kind == "ties":
        base, later = np.round(base / 5) * 5, np.round(later / 5) * 5
        later[:40] = base[:40]  # values equal to baseline values
    m = DriftMonitor(SETTINGS)
    for i, x in enumerate(base.tolist()):
        assert m.update(x, T0 + i) is None
    reports, transitions = {}, {}
    for i, x in enumerate(later.tolist()):
        r = m.update(x, T0 + 1000 + i)
        if r is not None:
            reports[i + 1], transitions[i + 1] = r, m.transition
    # a report every 50 values, and one in between only where the alarm fired or resolved (an alarm look)
    assert [k for k in reports if k % 50 == 0] == list(range(50, 1731, 50))
    extra = [k for k in reports if k % 50]
    assert all(k % SETTINGS.look_every == 0 and transitions[k] is not None for k in extra)
    assert (len(extra) > 0) == (kind == "shifted")  # a 0.4 sd shift fires between reports here
    for seen in (50, 300, 500, 1250, 1700, *extra):
        r = reports[seen]
        window = later[max(0, seen - 500) : seen]
        assert r["window_size"] == len(window)
        assert abs(r["psi"] - reference_psi(base, window)) < 1e-9
        ref = stats.ks_2samp(base, window)
        assert abs(r["ks_statistic"] - ref.statistic) < 1e-9
        assert abs(r["ks_pvalue"] - ref.pvalue) < 1e-9
        assert abs(r["mean_shift"] - (window.mean() - base.mean()) / base.std()) < 1e-9
        assert abs(r["variance_ratio"] - window.std() / base.std()) < 1e-9
        for row in r["windows"]:
            w = later[seen - row["window"] : seen]
            ref = stats.ks_2samp(base, w)
            assert abs(row["ks_statistic"] - ref.statistic) < 1e-9
            assert abs(row["ks_pvalue"] - ref.pvalue) < 1e-9
            assert abs(row["psi"] - reference_psi(base, w)) < 1e-9
        assert r["window_start"] == T0 + 1000 + max(0, seen - 500)
        assert r["window_end"] == T0 + 1000 + seen - 1
        encode("DriftReport", r)  # field names and types are the schema's


def test_psi_function_and_grades_are_reported_not_alarmed() -> None:
    assert psi(np.array([0.0, 1.0]), np.array([0.5, 0.5])) == pytest.approx(
        (1e-4 - 0.5) * np.log(1e-4 / 0.5) + 0.5 * np.log(2)
    )
    rng = np.random.default_rng(1)
    m, _ = run_monitor(np.concatenate([rng.normal(50, 10, 1000), rng.normal(80, 40, 500)]))
    r = m.update(50.0, T0)  # not a look
    assert r is None
    assert m.firing


# -- calibrated alarm on seeded streams -------------------------------------------------------------------------------


def test_stationary_false_alarms_within_budget_with_adwin_beside(capsys) -> None:
    ours, adwin = 0, 0
    values = 0
    for seed in SEEDS:
        x = np.random.default_rng(seed).normal(50, 10, 6000)  # 1,000 baseline + 5,000 monitored
        _, fired = run_monitor(x)
        ours += len(fired)
        if seed < 20:  # ADWIN is slower: a fifth of the seeds is enough to show its rate
            adwin += sum(i >= 1000 for i in adwin_detections(x))
        values += 5000
    with capsys.disabled():
        print(
            f"\nstationary N(50,10), 100 seeds x 5,000 values: ours {ours} false alarms "
            f"({ours / values * 1e4:.3f} per 10k; budget 5 = 0.1 per 10k); "
            f"ADWIN {adwin} over 20 seeds ({adwin / (20 * 5000) * 1e4:.3f} per 10k)"
        )
    assert ours <= 10


@pytest.mark.parametrize(
    ("kind", "median_max"),
    [({"mean": 55.0}, 150), ({"mean": 60.0}, 50), ({"sd": 20.0}, 150)],
    ids=["half-sd-shift", "one-sd-shift", "doubled-sd"],
)
def test_shift_is_alarmed_fast(kind: dict, median_max: int, capsys) -> None:
    d, false = delays(kind)
    ad, missed = [], 0
    for seed in range(30):
        hits = [i for i in adwin_detections(shifted_stream(seed, **kind)) if i >= 2000]
        ad.append(hits[0] - 2000 + 1 if hits else 10**9)
        missed += not hits
    with capsys.disabled():
        print(
            f"\n{kind}: ours median delay {np.median(d):.0f} (max {max(d)}, {false} alarms before the shift); "
            f"ADWIN over 30 seeds: median {np.median(ad):.0f}, missed within 1,000 values in {missed}"
        )
    assert max(d) <= 1000  # alarmed in every seed within 1,000 values
    assert np.median(d) <= median_max


# -- alert lifecycle, processor, state --------------------------------------------------------------------------------


def outcome(i: int, score: float, agent: str = "hunter") -> dict:
    return {
        "event_id": f"e{i}",
        "ts": T0 + i * 1000,
        "agent_name": agent,
        "task_type": "t",
        "variant_id": "v1",
        "success": True,
        "reward": 1.0,
        "latency_ms": 100.0 + i % 3,
        "cost_usd": 0.01,
        "features": {"intent_score": score},
        "attributes": {"tier": "gold" if i % 3 else "silver"},
    }


def test_processor_fires_once_and_resolves_once() -> None:
    rng = np.random.default_rng(5)
    p = DriftProcessor(DriftSettings(categorical=("tier",)))
    scores = np.concatenate([rng.normal(0.5, 0.1, 2000), rng.normal(0.8, 0.1, 1000), rng.normal(0.5, 0.1, 1500)])
    out = []
    for i, s in enumerate(scores.tolist()):
        out += p.on_outcome(outcome(i, s), (0, i))
    alerts = [e for e in out if e.topic == "alerts" and e.value["labels"]["feature"] == "intent_score"]
    assert [a.value["status"] for a in alerts] == ["firing", "resolved"]
    fire, resolve = alerts
    assert fire.value["severity"] == "warning" and fire.value["ts"] <= T0 + 2100 * 1000
    assert (
        fire.value["fingerprint"]
        == resolve.value["fingerprint"]
        == fingerprint("drift", {"agent_name": "hunter", "feature": "intent_score"})
    )
    assert resolve.value["ends_at"] >= T0 + 3000 * 1000 and resolve.value["starts_at"] == fire.value["starts_at"]
    assert fire.value["evidence"]["statistic"] > fire.value["evidence"]["threshold"]
    for a in alerts:
        encode("Alert", a.value)
    reports = [e for e in out if e.topic == "drift.reports"]
    assert {e.key for e in reports} == {
        "hunter/reward",
        "hunter/latency_ms",
        "hunter/cost_usd",
        "hunter/intent_score",
        "hunter/tier",
    }
    for e in reports[:: max(1, len(reports) // 50)]:
        encode("DriftReport", e.value)
    # a replayed input changes nothing
    assert p.on_outcome(outcome(10, 0.5), (0, 10)) == []


def test_metric_series_variants_and_replay_idempotence() -> None:
    p = DriftProcessor(DriftSettings(baseline_size=100, window=100, windows=(50, 100), per_variant=True))
    out = []
    for i in range(300):
        out += p.on_metric(
            {"ts": T0 + i, "agent_name": "a", "variant_id": "v2", "name": "queue_depth", "value": float(i % 11)}, (2, i)
        )
    assert {(e.value["feature"], e.value["variant_id"]) for e in out} == {("queue_depth", None), ("queue_depth", "v2")}
    assert p.on_metric({"ts": T0, "agent_name": "a", "name": "queue_depth", "value": 1e9}, (2, 299)) == []
    assert (
        p.on_metric({"ts": T0, "agent_name": "a", "name": "queue_depth", "value": 1.0}, (1, 0)) == []
    )  # new partition


def test_state_round_trip_gives_identical_reports() -> None:
    rng = np.random.default_rng(9)
    settings = DriftSettings(categorical=("tier",))
    a = DriftProcessor(settings)
    xs = rng.normal(0, 1, 3000).tolist()
    for i in range(1730):
        a.on_outcome(outcome(i, xs[i]), (0, i))
    b = DriftProcessor.from_dict(json.loads(json.dumps(a.to_dict())), settings)
    for i in range(1730, 3000):
        ea, eb = a.on_outcome(outcome(i, xs[i]), (0, i)), b.on_outcome(outcome(i, xs[i]), (0, i))
        assert [e.value for e in ea] == [e.value for e in eb]


def test_state_written_with_the_learning_values_as_a_list_restores() -> None:
    # State written before the learning values were packed (checkpointed states outlive an upgrade).
    rng = np.random.default_rng(3)
    xs = rng.normal(0, 1, 1600).tolist()
    a = DriftMonitor(DriftSettings(), feature="f")
    for i in range(600):
        a.push(xs[i], i)
    state = json.loads(json.dumps(a.to_dict()))
    assert isinstance(state["learning"], str)
    state["learning"] = xs[:600]
    b = DriftMonitor.from_dict(state, DriftSettings())
    reports = [(a.update(x, i), b.update(x, i)) for i, x in enumerate(xs[600:], 600)]
    assert sum(ra is not None for ra, _ in reports) == 12  # a baseline at 1,000, then a report every 50
    assert all(ra == rb for ra, rb in reports)


@pytest.mark.parametrize("window", [500, 1000], ids=["window-500", "cell-counts-1000"])
def test_looks_taken_together_equal_looks_taken_alone(window: int) -> None:
    # Series started at different times (a batch then holds filling and full windows at several ring positions),
    # with and without ties: update_many's reports are update's, to the last bit.
    settings = DriftSettings(window=window)
    rng = np.random.default_rng(4)
    starts = [0, 0, 25, 50, 475, 1000]
    streams = [rng.normal(50, 10, 1600 + window).tolist() for _ in starts]
    streams[1] = [round(x / 5) * 5.0 for x in streams[1]]
    streams[4] = [float(round(x)) for x in streams[4]]
    alone = [DriftMonitor(settings, feature=f"f{k}") for k in range(len(starts))]
    together = [DriftMonitor(settings, feature=f"f{k}") for k in range(len(starts))]
    reports = 0
    for i in range(max(starts) + 1600 + window):
        live = [k for k, start in enumerate(starts) if 0 <= i - start < len(streams[k])]
        values = [streams[k][i - starts[k]] for k in live]
        expected = [alone[k].update(x, T0 + i) for k, x in zip(live, values, strict=True)]
        assert update_many([together[k] for k in live], values, T0 + i) == expected
        reports += sum(r is not None for r in expected)
    assert reports >= len(starts) * (600 + window) // 50


def test_many_series_search_their_baselines_together() -> None:
    # From _SEARCH_TOGETHER_FROM series on, the baseline search is one branch-free pass over all of them; values
    # equal to baseline values (and beyond both ends) find the same cells as numpy's search.
    rng = np.random.default_rng(12)
    bases = rng.normal(50, 10, (_SEARCH_TOGETHER_FROM + 5, 1000))
    values = rng.normal(50, 10, (150, len(bases)))
    values[::7] = bases[:, :150:7].T
    values[3], values[4] = -1e6, 1e6
    alone = [DriftMonitor(SETTINGS, feature=f"f{k}") for k in range(len(bases))]
    together = [DriftMonitor(SETTINGS, feature=f"f{k}") for k in range(len(bases))]
    for m, other, base in zip(alone, together, bases.tolist(), strict=True):
        m.pin_baseline(base)
        other.pin_baseline(base)
    for i, row in enumerate(values.tolist()):
        expected = [m.update(x, T0 + i) for m, x in zip(alone, row, strict=True)]
        assert update_many(together, row, T0 + i) == expected


def test_processor_looks_at_the_series_of_an_event_together() -> None:
    # An event's series fall due together and are looked at in one pass; a feature named like an outcome field is
    # the same series fed twice in one event, whose first look comes before its second value.
    rng = np.random.default_rng(6)
    p = DriftProcessor(DriftSettings())
    alone = DriftMonitor(DriftSettings(), agent_name="hunter", feature="reward")
    out, expected = [], []
    for i, (a, b) in enumerate(rng.normal(0, 1, (1600, 2)).tolist()):
        event = outcome(i, b) | {"reward": a, "features": {"intent_score": b, "reward": b}}
        out += p.on_outcome(event, (0, i))
        expected += [r for r in (alone.update(a, event["ts"]), alone.update(b, event["ts"])) if r]
    assert [e.value for e in out if e.key == "hunter/reward" and e.record_type == "DriftReport"] == expected
    assert len(expected) >= 44


def test_bank_rows_are_recycled() -> None:
    # A series' window state is a row of its shape's bank: freed when the series is collected, taken zeroed.
    settings = DriftSettings(psi_grades=(0.1, 0.2, 0.26))  # a shape of this test's own
    rng = np.random.default_rng(8)
    base, values = rng.normal(0, 1, 1000).tolist(), rng.normal(0.3, 1, 700).tolist()

    def reports(m: DriftMonitor) -> list:
        m.pin_baseline(base)
        return [m.update(x, T0 + i) for i, x in enumerate(values)]

    used = DriftMonitor(settings, feature="f")
    reports(used)
    row = used.slot
    del used
    gc.collect()
    recycled = DriftMonitor(settings, feature="f")
    again = reports(recycled)
    fresh = DriftMonitor(settings, feature="f")
    assert reports(fresh) == again
    assert recycled.slot == row != fresh.slot


def test_pin_and_reset_baseline() -> None:
    m = DriftMonitor(DriftSettings())
    m.pin_baseline(np.random.default_rng(2).normal(10, 1, 400).tolist())
    assert m.ready and len(m.baseline) == 400
    r = None
    for i in range(50):
        r = m.update(10.0 + (i % 7) / 7, T0 + i)
    assert r is not None and r["baseline_size"] == 400 and r["window_size"] == 50
    m.reset_baseline()
    assert not m.ready and m.update(1.0, T0) is None


def test_processor_pin_resolves_a_firing_alert() -> None:
    p = DriftProcessor(DriftSettings(baseline_size=200, window=200, windows=(50, 200)))
    for i in range(400):
        p.on_metric({"ts": T0 + i, "agent_name": "a", "name": "m", "value": float(i < 200) * 5 + (i % 10)}, (0, i))
    assert p.monitors[("a", "m", None)].firing
    out = p.pin_baseline("a", "m", [float(i % 10) + 5 for i in range(200)])
    assert [e.value["status"] for e in out] == ["resolved"]


def test_categorical_psi_with_other_bucket() -> None:
    s = DriftSettings(baseline_size=1000, max_categories=3)
    m = CategoricalDriftMonitor(s, feature="tier")
    cats = ["a", "b", "c", "d", "e"]
    rng = np.random.default_rng(4)
    base = rng.choice(cats, 1000, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    for i, c in enumerate(base):
        m.update(str(c), i)
    assert m.categories == ["a", "b", "c", "other"]
    window = rng.choice(cats + ["new"], 500, p=[0.2, 0.3, 0.2, 0.1, 0.1, 0.1])
    r = None
    for i, c in enumerate(window):
        r = m.update(str(c), 1000 + i) or r

    def props(v):
        return np.array(
            [np.mean(v == "a"), np.mean(v == "b"), np.mean(v == "c"), np.mean(~np.isin(v, ["a", "b", "c"]))]
        )

    assert abs(r["psi"] - psi(props(window), props(base))) < 1e-12
    assert m.firing
    encode("DriftReport", r)


def test_settings_validation_and_overrides() -> None:
    with pytest.raises(ValueError):
        DriftSettings(windows=(30, 100))
    with pytest.raises(ValueError):
        DriftSettings(detectors=("nope",))
    s = DriftSettings(overrides={"*/latency_ms": {"window": 1000}, "a/latency_ms": {"bins": 5}})
    assert s.for_series("a", "latency_ms").window == 1000 and s.for_series("a", "latency_ms").bins == 5
    assert s.for_series("b", "reward") is s
    assert DriftSettings(windows=[50, 100]).windows == (50, 100)  # TOML lists


def test_river_detectors_report_in_the_same_report() -> None:
    m = DriftMonitor(DriftSettings(detectors=("adwin", "page_hinkley")))
    rng = np.random.default_rng(0)
    reports = [m.update(float(x), T0 + i) for i, x in enumerate(np.r_[rng.normal(0, 1, 1500), rng.normal(3, 1, 200)])]
    reports = [r for r in reports if r]
    assert set(reports[-1]["detectors"]) == {"adwin", "page_hinkley"}
    assert any(r["detectors"]["adwin"] for r in reports[-4:])
    encode("DriftReport", reports[-1])


def test_calibration_of_a_new_baseline_reuses_the_rank_threshold() -> None:
    # Its cost is measured in tests/bench/bench_drift.py (timing is never asserted); here: continuous baselines
    # share one distribution-free threshold, and a tied baseline gets its own from a bootstrap of itself.
    rng = np.random.default_rng(0)
    m = DriftMonitor(SETTINGS)
    m.pin_baseline(rng.normal(0, 1, 1000).tolist())
    other = DriftMonitor(SETTINGS)
    other.pin_baseline(rng.normal(5, 2, 1000).tolist())
    assert other.threshold == m.threshold
    tied = DriftMonitor(SETTINGS)
    tied.pin_baseline(rng.integers(0, 20, 1000).astype(float).tolist())
    assert 3.0 < tied.threshold < 6.0
    assert tied.threshold != m.threshold


def test_bootstrap_calibration_depends_on_the_tie_pattern_only() -> None:
    from reverify.processors.drift.calibration import (
        _threshold,
        _threshold_for,
        coarse_ties,
        simulate_max_statistic,
        tie_ranks,
    )

    s = SETTINGS
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 6, 1000)
    # Same ties, other values: one simulation serves both, with the threshold the values themselves give.
    first, second = DriftMonitor(s), DriftMonitor(s)
    first.pin_baseline(levels.astype(float).tolist())
    hits = _threshold.cache_info().hits
    second.pin_baseline((levels * 10.0 + 0.002).tolist())
    assert _threshold.cache_info().hits == hits + 1
    assert second.threshold == first.threshold
    assert second.shape is first.shape  # one bank: their looks are taken together
    # calibrated at the pattern's counts on the grid of coarse_ties
    pattern = coarse_ties(np.unique(levels, return_counts=True)[1])
    assert pattern != tuple(np.unique(levels, return_counts=True)[1]) and sum(pattern) == 1000
    m = simulate_max_statistic(
        1000,
        s.windows,
        s.look_every,
        values=tie_ranks(pattern),
        replicates=s.calibration_replicates,
        length=s.calibration_length,
        seed=s.calibration_seed,
        spread_weight=s.spread_weight,
    )
    assert first.threshold == _threshold_for(m, s.window // s.look_every, s.rate_per_value * m.size * s.look_every)
    # A constant series: no value of the baseline's own can move the statistic, so any other value alarms.
    constant = DriftMonitor(s)
    constant.pin_baseline([0.002] * 1000)
    assert constant.threshold == 0.0


@pytest.mark.parametrize(
    ("chunk", "case", "digest", "last"),
    [
        (1_000_000, "continuous", "75e2a51ae9b196013f72", 1.5633973267864365),
        (1_000_000, "ties", "1b8145a99644e6e15927", 1.3130147859315633),
        (1_000_000, "ar1", "1d27c88ea543ed9640e2", 1.1741767503153884),
        (1_000_000, "ar1_ties", "0f7a0dd9d2237534c9e2", 1.288769621946114),
        (5_000, "continuous", "89fe16311a7146964f4e", 1.1000654298266532),
        (5_000, "ties", "b644aba437ea60e1653f", 0.7369981952563124),
        (5_000, "ar1", "1d27c88ea543ed9640e2", 1.1741767503153884),
    ],
)
def test_the_simulation_is_bit_identical_to_the_pinned_outputs(
    chunk: int, case: str, digest: str, last: float, monkeypatch
) -> None:
    # Pinned before simulate_max_statistic was made faster (commit 1a7f6a4): the same draws in the same order
    # give the same bits, so every threshold (and tests/unit/test_drift_presimulated.py's table) stays as it was.
    # A chunk of 5,000 values splits the 7 replicates into chunks of 2 rows (2,000 values each).
    import hashlib

    from reverify.processors.drift import calibration

    monkeypatch.setattr(calibration, "_CHUNK_VALUES", chunk)
    ties = calibration.tie_ranks((50, 30, 70, 25, 25))
    values, phi = {
        "continuous": (None, 0.0),
        "ties": (ties, 0.0),
        "ar1": (None, 0.35),
        "ar1_ties": (ties, 0.35),
    }[case]
    m = calibration.simulate_max_statistic(
        200, (25, 50, 100), 25, values=values, phi=phi, replicates=7, length=2_000, seed=3, spread_weight=0.9
    )
    assert m.shape == (7, 80)
    assert float(m[6, -1]) == last
    assert hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest()[:20] == digest


@pytest.mark.parametrize("max_buckets", [1 << 21, 64])  # 64: ~16 values a bucket, compared step by step
def test_the_bucketed_search_counts_as_searchsorted(max_buckets: int, monkeypatch) -> None:
    from reverify.processors.drift import calibration

    monkeypatch.setattr(calibration, "_MAX_BUCKETS", max_buckets)
    rng = np.random.default_rng(5)
    for values, keys in [
        (rng.standard_normal(1000), rng.standard_normal(20_000) * 3),  # keys beyond both ends
        (rng.integers(0, 20, 1000).astype(float), rng.integers(-2, 23, 5_000).astype(float)),  # ties, equal keys
        (np.array([1e-300, 2e-300, 1e300]), np.array([-np.inf, 0.0, 1.5e-300, 1e300, np.inf])),  # extreme spread
        (np.append(rng.random(1000), 1e12), rng.random(5_000)),  # an outlier crowds one bucket: searchsorted
        (np.full(10, 3.0), np.array([2.0, 3.0, 4.0])),  # one value: no buckets, searchsorted itself
    ]:
        values = np.sort(values)
        assert np.array_equal(calibration._count_below(values, keys), values.searchsorted(keys))
