"""The paper check: ratios beside the whitepaper's claims, judged on intervals; 'no data'
wherever the run measured nothing that speaks to a claim."""

from __future__ import annotations

import pytest

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


def test_accuracy_claims_use_labelled_accuracy_of_trained_weights_only(tmp_path):
    analysis = analysis_of(tmp_path, models=["mobilenet_v2"], rounds=2, failures=False)
    variants = analysis.variants
    accuracy = {"fp32": 0.718, "int8": 0.709, "int8-per-tensor": 0.61}
    variants["accuracy_top1"] = [accuracy.get(r) for r in variants["recipe"]]
    rows = {(r["claim"], r["model"]): r for r in check_rows(analysis)}
    channel = rows[("per-channel int8 within 2% of float top-1", "mobilenet_v2")]
    assert channel["verdict"] == "consistent" and "-0.9 points" in channel["measured"]
    tensor = rows[("per-tensor int8 worse than per-channel", "mobilenet_v2")]
    assert tensor["verdict"] == "consistent" and "per-channel 70.9%" in tensor["measured"]
    variants["random_weights"] = True  # agreement of a random network is not accuracy
    rows = [r for r in check_rows(analysis) if r["claim"].startswith("per-")]
    assert {r["measured"] for r in rows} == {"no data"}
