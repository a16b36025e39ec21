"""The paper check: ratios beside the whitepaper's claims, judged on intervals; 'no data'
wherever the run measured nothing that speaks to a claim."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.accuracy.figures import ACCURACY_COLUMNS, accuracy_rows
from bench.analysis import analyse
from bench.report.paper import (
    TABLE7,
    _dsp_verdict,
    _range_verdict,
    check_rows,
    paper_checks,
    paper_model,
    render_text,
)
from bench.store.sqlite import SQLiteStore
from bench.synthetic import make_store


def analysis_of(tmp_path, **options):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, **options)
    store = SQLiteStore(path, readonly=True)
    try:
        return analyse(store.facts(run_id))
    finally:
        store.close()


@pytest.mark.parametrize("name, title, same", [
    ("mobilenet_v2", "MobileNet-v2", True),
    ("mobilenet_v2:imagenet", "MobileNet-v2", True),
    ("mobilenet_v1,seed=3", "MobileNet-v1", True),
    ("mobilenet_v2@160,alpha=0.5", "MobileNet-v2", False),
    ("resnet50", "ResNet-v1-50", True),
    ("inception_v3", "Inception-v3", True),
])
def test_zoo_names_find_their_table7_row(name, title, same):
    row, matches = paper_model(name)
    assert row.title == title and matches is same


@pytest.mark.parametrize("name", ["resnet50_v2", "tiny_cnn", "models/mine.tflite", "<x>"])
def test_other_models_have_no_table7_row(name):
    assert paper_model(name) == (None, False)


def test_table7_ratios_are_the_papers():
    assert TABLE7["mobilenet_v1"].cpu_speedup == pytest.approx(155 / 68)
    assert TABLE7["mobilenet_v2"].dsp_speedup == pytest.approx(105 / 15.5)
    assert TABLE7["inception_v3"].dsp_speedup is None


@pytest.mark.parametrize("low, high, verdict", [
    (1.2, 1.8, "slower than claimed"), (1.5, 2.1, "consistent"), (2.2, 2.8, "consistent"),
    (2.9, 3.5, "consistent"), (3.1, 4.0, "faster than claimed")])
def test_verdicts_judge_the_interval_not_the_point(low, high, verdict):
    assert _range_verdict(low, high, (2.0, 3.0)) == verdict


@pytest.mark.parametrize("low, high, verdict", [
    (0.8, 0.95, "slower than float CPU"), (0.8, 1.05, "inconclusive"), (1.2, 8.0, "consistent"),
    (6.0, 14.0, "consistent"), (11.0, 14.0, "faster than claimed")])
def test_the_dsp_claim_needs_a_gain_shown_by_the_interval(low, high, verdict):
    assert _dsp_verdict(low, high) == verdict


def test_a_run_speaks_to_size_and_cpu_speed_and_says_no_data_for_the_rest(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2", "mobilenet_v1"],
                           devices=["local", "rpi4"], rounds=4, failures=False)
    checks = paper_checks(analysis)
    size = [c for c in checks if c.claim.startswith("weight-only")]
    assert {c.model for c in size} == {"mobilenet_v2", "mobilenet_v1"}
    for check in size:
        variants = analysis.variants
        row = variants[(variants["model"] == check.model) & (variants["recipe"] == "dynamic")]
        assert check.value == pytest.approx(row.iloc[0]["compression"])
    cpu = [c for c in checks if c.claim.startswith("int8 2-3x")]
    assert {(c.model, c.recipe, c.where) for c in cpu} == {
        (m, r, f"{d}/xnnpack/t1") for m in ("mobilenet_v2", "mobilenet_v1")
        for r in ("int8", "int8-per-tensor") for d in ("local", "rpi4")}
    for check in cpu:
        found = analysis.speedup([check.model, check.recipe, None, check.where.split("/")[0],
                                  "xnnpack", 1], "same_backend")
        assert (check.value, check.low, check.high) == (
            found["speedup"], found["speedup_low"], found["speedup_high"])
        assert check.verdict == _range_verdict(check.low, check.high, (2.0, 3.0))
        assert "MobileNet-v" in check.paper and " ms = " in check.paper  # Table 7 beside
    no_data = [c for c in checks if c.measured == "no data"]
    assert {c.claim for c in no_data} == {
        "int8 up to 10x faster on a DSP", "per-channel int8 within 2% of float top-1",
        "per-tensor int8 worse than per-channel"}
    text = "\n".join(render_text(analysis))
    assert "2018-era TFLite uint8 per-layer kernels" in text and "no data:" in text


def test_a_missing_int8_speedup_says_why_with_the_devices_int8_path(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2"], recipes=["fp32", "int8"],
                           devices=["rpi4"], rounds=3, failures=False)
    cells = analysis.cells
    cells.loc[cells["recipe"] == "int8", "status"] = "failed"
    cells.loc[cells["recipe"] == "int8", "reason"] = "delegate refused"
    (check,) = [c for c in paper_checks(analysis) if c.claim.startswith("int8 2-3x")]
    assert check.measured == "no data" and "delegate refused" in check.note
    assert "int8 path: ARM NEON without the dot-product extension" in check.note


def _evaluation(recipe: str, dataset: str, predictions: list[int],
                labels: list[int] | None) -> dict:
    return {"model": "mobilenet_v2:imagenet", "recipe": recipe, "sha256": recipe,
            "device": "pixel", "backend": "xnnpack", "threads": 1, "dataset": dataset,
            "dataset_sha256": dataset, "dataset_size": len(predictions),
            "labelled": int(labels is not None), "measured_on": "device", "status": "ok",
            "reason": None, "n": len(predictions),
            "top1": None if labels is None else
            sum(p == t for p, t in zip(predictions, labels, strict=True)),
            "top5": None, "predictions": json.dumps(predictions),
            "labels": None if labels is None else json.dumps(labels),
            "reference_recipe": None if recipe == "fp32" else "fp32", "snr_db": 20.0,
            "identical": 0, "runtime_name": "ai-edge-litert", "runtime_version": "2.3.0",
            "delegated": "yes", "seconds": 1.0}


def _with_accuracy(analysis, evaluations: list[dict]):
    rows = accuracy_rows(evaluations)
    analysis.accuracy = pd.DataFrame(rows, columns=ACCURACY_COLUMNS)
    return analysis


def test_accuracy_claims_judge_the_paired_interval_on_labelled_data(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2"], rounds=2, failures=False)
    labels = [k % 10 for k in range(1000)]
    fp32 = [t if k < 718 else (t + 1) % 10 for k, t in enumerate(labels)]
    int8 = [t if k < 709 else (t + 1) % 10 for k, t in enumerate(labels)]  # 9 lost
    tensor = [t if k < 610 else (t + 1) % 10 for k, t in enumerate(labels)]  # 108 lost
    _with_accuracy(analysis, [_evaluation("fp32", "folder", fp32, labels),
                              _evaluation("int8", "folder", int8, labels),
                              _evaluation("int8-per-tensor", "folder", tensor, labels)])
    rows = {(r["claim"], r["recipe"]): r for r in check_rows(analysis)}
    channel = rows[("per-channel int8 within 2% of float top-1", "int8")]
    assert channel["verdict"] == "consistent", channel
    assert "-0.9 points" in channel["measured"] and "on 1000 folder images" in channel["measured"]
    worse = rows[("per-tensor int8 worse than per-channel", "int8-per-tensor")]
    assert worse["verdict"] == "consistent" and "-10.8 points" in worse["measured"]
    # The same drops on 20 images cannot be told from noise.
    small = analysis_of(tmp_path / "small", models=["mobilenet_v2"], rounds=2, failures=False)
    _with_accuracy(small, [_evaluation("fp32", "foolbox", fp32[:20], labels[:20]),
                           _evaluation("int8", "foolbox", fp32[:19] + [11], labels[:20])])
    (check,) = [c for c in paper_checks(small) if c.claim.startswith("per-channel")]
    assert check.verdict == "inconclusive" and check.low < -0.02 < check.high


def test_a_real_drop_beyond_two_points_is_worse_than_claimed(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2"], rounds=2, failures=False)
    labels = [k % 10 for k in range(2000)]
    fp32 = list(labels)
    int8 = [t if k % 10 else (t + 1) % 10 for k, t in enumerate(labels)]  # 10% wrong
    _with_accuracy(analysis, [_evaluation("fp32", "folder", fp32, labels),
                              _evaluation("int8", "folder", int8, labels)])
    (check,) = [c for c in paper_checks(analysis) if c.claim.startswith("per-channel")]
    assert check.verdict == "worse than claimed" and check.high < -0.02


def test_heldout_agreement_bounds_the_change_but_never_shows_a_drop(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2"], rounds=2, failures=False)
    fp32 = [k % 1000 for k in range(1000)]
    close = [p if k % 500 else p + 1 for k, p in enumerate(fp32)]  # 99.8% agree
    far = [p if k % 10 else p + 1 for k, p in enumerate(fp32)]  # 90% agree
    _with_accuracy(analysis, [_evaluation("fp32", "heldout", fp32, None),
                              _evaluation("int8", "heldout", close, None),
                              _evaluation("int8-per-tensor", "heldout", far, None)])
    rows = {(r["claim"], r["recipe"]): r for r in check_rows(analysis)}
    channel = rows[("per-channel int8 within 2% of float top-1", "int8")]
    assert channel["verdict"] == "consistent" and "at most" in channel["measured"]
    assert rows[("per-tensor int8 worse than per-channel", "int8-per-tensor")]["verdict"] \
        == "consistent"
    _with_accuracy(analysis, [_evaluation("fp32", "heldout", fp32, None),
                              _evaluation("int8", "heldout", far, None)])
    (check,) = [c for c in paper_checks(analysis) if c.claim.startswith("per-channel")]
    assert check.verdict == "inconclusive"  # 90% agreement allows a 10-point change, or none


def test_without_accuracy_of_trained_weights_the_claims_have_no_data(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2"], rounds=2, failures=False)
    rows = [r for r in check_rows(analysis) if r["claim"].startswith("per-")]
    assert len(rows) == 2 and {r["measured"] for r in rows} == {"no data"}
    assert all("random-weight output agreement is not accuracy" in r["note"] for r in rows)
