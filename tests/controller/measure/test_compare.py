"""compare_runs and show_run on a store filled by real bench and profile jobs on a real agent: the paired
interval where the store holds a loop that timed both models, none (and why) where it does not, a layer diff
aligned on graph nodes across a float and an INT8 model, and one sentence for every bad selector."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from controller.errors import FarmError, JobFailed, UsageError
from controller.measure.api import BenchResult, bench, profile
from controller.measure.compare import compare_runs
from controller.measure.layer_diff import layer_diff
from controller.measure.settings import MeasureSettings
from controller.measure.show import show_run
from controller.measure.store import ResultsStore
from optimizers import Quantizer
from tests import models

FAST = MeasureSettings(threads=1, warmup=2, min_iterations=60, min_seconds=0.1, profile_iterations=5)


@dataclass
class Filled:
    store: ResultsStore
    paired: BenchResult      # tiny_conv_64 timed with tiny_conv as its reference, one inference of each in turn
    small: int               # a benchmark of tiny_conv
    big: int                 # a benchmark of tiny_conv_64
    small_profile: int
    int8_profile: int
    fp16_profile: int
    device: str
    failed: int              # a benchmark the agent refused (UNSUPPORTED_OP), stored as failed


@pytest.fixture(scope="module")
def filled(shared_agent, model_dir, tmp_path_factory):
    client, _agent = shared_agent
    small = models.conv_model(model_dir / "tiny_conv.onnx")
    big = models.conv_model(model_dir / "tiny_conv_64.onnx", size=64)
    int8 = Quantizer("int8").quantize(small, calibration_data="synthetic", output=model_dir / "tiny_conv_int8.onnx")
    fp16 = Quantizer("fp16").quantize(small, output=model_dir / "tiny_conv_fp16.onnx")
    store = ResultsStore(tmp_path_factory.mktemp("compare") / "r.db")
    paired = bench(big, client, FAST, store, reference=small)
    runs = [bench(small, client, FAST, store).run_id, bench(big, client, FAST, store).run_id,
            profile(small, client, FAST, store).run_id, profile(int8.path, client, FAST, store).run_id,
            profile(fp16.path, client, FAST, store).run_id]
    with pytest.raises(JobFailed):
        bench(models.unknown_op_model(model_dir / "unknown_op.onnx"), client, FAST, store)
    (failed,) = store.runs(status="failed")
    yield Filled(store, paired, *runs, device=client.name, failed=failed["id"])
    store.close()


def test_the_paired_interval_comes_from_the_loop_that_timed_both(filled):
    expected = filled.paired.paired_speedup()        # tiny_conv's time / tiny_conv_64's, pair by pair
    cmp = compare_runs(filled.store, [filled.small, filled.big])
    a, b = cmp.frame.to_dict("records")
    assert (a["run"], b["run"]) == (filled.small, filled.big)
    assert (b["paired_speedup"], b["paired_low"], b["paired_high"]) == pytest.approx(
        (expected.median, expected.low, expected.high))
    assert b["paired_pairs"] == expected.pairs and b["verdict"] == "slower" and expected.high < 1
    assert b["speedup"] == pytest.approx(a["p50_ms"] / b["p50_ms"])
    assert b["delta_p50_ms"] == pytest.approx(b["p50_ms"] - a["p50_ms"])
    assert a["p95_ms"] >= a["p50_ms"] and a["mean_ms"] > 0
    back = compare_runs(filled.store, [filled.big, filled.small]).frame.to_dict("records")[1]
    assert back["verdict"] == "faster" and back["paired_low"] > 1    # the same pairs, the other way round
    text = cmp.to_markdown()
    assert f"| B | {filled.big} | tiny_conv_64 |" in text and f"{expected.pairs} pairs) slower |" in text


def test_runs_never_timed_together_have_no_interval_and_say_why(filled):
    cmp = compare_runs(filled.store, [filled.small, filled.small_profile])
    assert cmp.frame["paired_speedup"].isna().all()     # one model twice: nothing to pair
    assert any("B: no paired interval" in n for n in cmp.notes)
    assert any("B is a profile run" in n for n in cmp.notes)


def test_layers_align_on_graph_nodes_across_float_and_int8(filled):
    cmp = compare_runs(filled.store, [filled.small_profile, filled.int8_profile])
    rows = {r["layer"]: r for r in cmp.layers.to_dict("records")}
    conv = rows["conv +1 fused"]        # ORT's fused Conv+Relu, and the INT8 model's QLinearConv, one row
    assert conv["op_type"] == "Conv / QLinearConv" and conv["A_ms"] > 0 and conv["B_ms"] > 0
    assert conv["B_speedup"] == pytest.approx(conv["A_ms"] / conv["B_ms"])
    assert any(r["A_ms"] is None or r["A_ms"] != r["A_ms"] for r in rows.values())   # a QuantizeLinear: B only
    text = cmp.to_markdown(top=0)
    assert f"## layers (A run {filled.small_profile}, B run {filled.int8_profile})" in text
    assert "| conv +1 fused | Conv / QLinearConv |" in text and "| total (all layers) |" in text


def test_fp16_kernels_onnx_runtime_wraps_in_casts_align_by_their_runtime_names(filled):
    cmp = compare_runs(filled.store, [filled.small_profile, filled.fp16_profile])
    rows = {r["layer"]: r for r in cmp.layers.to_dict("records")}
    for layer in ("conv +1 fused", "pool", "fc"):     # 'InsertedPrecisionFreeCast_r_nchwc' is the fused conv
        assert rows[layer]["A_ms"] > 0 and rows[layer]["B_ms"] > 0, layer
    assert not [name for name in rows if "InsertedPrecisionFreeCast" in name]


def test_a_failed_run_as_a_side_has_no_latency_and_says_so(filled):
    cmp = compare_runs(filled.store, [filled.failed, filled.small])
    assert cmp.frame["p50_ms"].isna().tolist() == [True, False] and cmp.frame["speedup"].isna().all()
    assert "A is a failed run (UNSUPPORTED_OP): it has no latency" in cmp.notes
    assert "| status | failed: UNSUPPORTED_OP: " in show_run(filled.store, filled.failed).to_markdown()


def test_a_benchmark_takes_its_layers_from_a_profile_of_the_same_model(filled):
    cmp = compare_runs(filled.store, [filled.small, filled.big])
    assert [s.layers_run for s in cmp.sides] == [filled.small_profile, None]
    # the hint names the model's file where the run found it (it is still there)
    assert any(re.search(r"no layers for B \(`farmctl profile \S*/tiny_conv_64.onnx --device", n) for n in cmp.notes)


def test_models_and_devices_as_sides(filled):
    by_model = compare_runs(filled.store, ["model:tiny_conv", "tiny_conv_64"])   # newest benchmark of each
    assert [s.run["id"] for s in by_model.sides] == [filled.small, filled.big]
    digest = filled.paired.model_digest[:12]
    by_device = compare_runs(filled.store, [f"device:{filled.device}", f"run:{filled.small}"], model=digest)
    assert by_device.sides[0].run["id"] == filled.big
    assert compare_runs(filled.store, ["model:tiny_conv_int8", filled.small]).sides[0].run["kind"] == "profile"


@pytest.mark.parametrize("sides, kw, words", [
    (["999", "1"], {}, "no run 999 in '.*r.db'; `farmctl report` lists the stored runs"),
    (["model:resnet", "1"], {}, "no successful run of model 'resnet' in .*; measure it first with "
                                "`farmctl bench resnet.onnx`"),
    (["model:tiny_conv", "1"], {"device": "pi4"}, "no successful run of model 'tiny_conv' on device 'pi4'.*"
                                                  "`farmctl bench tiny_conv.onnx --device pi4`"),
    (["device:pi4", "1"], {"model": "tiny_conv"}, "no successful run on device 'pi4' of model 'tiny_conv'.*"
                                                  "`farmctl bench tiny_conv.onnx --device pi4`"),
    (["resnet", "1"], {}, "no run, model or device 'resnet'"),
])
def test_a_side_the_store_lacks_is_one_sentence(filled, sides, kw, words):
    with pytest.raises(FarmError, match=words):
        compare_runs(filled.store, sides, **kw)


def test_bad_command_lines_and_stores(filled, tmp_path):
    with pytest.raises(UsageError, match="at least two runs, models or devices"):
        compare_runs(filled.store, ["1"])
    with pytest.raises(UsageError, match="'run:x' is not a run id"):
        compare_runs(filled.store, ["run:x", "1"])
    with pytest.raises(FarmError, match="no results store at .*; run `farmctl bench` first"):
        compare_runs(tmp_path / "none.db", ["1", "2"])
    assert not (tmp_path / "none.db").exists()    # reading never creates a store
    ResultsStore(tmp_path / "empty.db").close()
    with pytest.raises(FarmError, match="holds no runs yet; measure first: `farmctl bench MODEL`"):
        show_run(tmp_path / "empty.db", 1)


def test_show_a_profile_and_a_benchmark(filled):
    view = show_run(filled.store, filled.small_profile)
    assert view.run["kind"] == "profile" and view.settings["profile_iterations"] == 5
    assert view.layers["label"].tolist()[0] and view.layers["time_ms"].is_monotonic_decreasing
    text = view.to_markdown(top=2)
    assert text.startswith(f"## run {filled.small_profile}: tiny_conv on {filled.device} (profile, ok)")
    assert "### latency" in text and "| conv +1 fused | Conv |" in text and "more layers (`--top 0`" in text
    doc = show_run(filled.store.path, filled.paired.run_id).to_json()
    assert doc["run"]["reference_digest"] and doc["result"]["reference_latency"]["p50_ms"] > 0
    assert doc["times_stored"] == filled.paired.iterations and doc["layers"] == []
    assert re.search(r"A benchmark stores no layers: `farmctl profile \S*/tiny_conv_64.onnx --device",
                     show_run(filled.store, filled.big).to_markdown())
    with pytest.raises(FarmError, match="no run 999 in"):
        show_run(filled.store, 999)


def test_rows_fused_on_one_side_and_apart_on_the_other_are_one_layer():
    fused = [{"name": "Conv_0_nchwc", "op_type": "Conv", "time_ms": 3.0, "source_nodes": ["conv", "relu"]},
             {"name": "fc", "op_type": "Gemm", "time_ms": 1.0}]
    apart = [{"name": "conv", "op_type": "Conv", "time_ms": 2.0, "source_nodes": ["conv"]},
             {"name": "relu", "op_type": "Relu", "time_ms": 0.5, "source_nodes": ["relu"]},
             {"name": "fc_token_3", "op_type": "Gemm", "time_ms": 2.0}]
    cast = [{"name": "InsertedPrecisionFreeCast_relu.out_nchwc", "op_type": "Conv", "time_ms": 4.0}]
    rows = layer_diff(["A", "B", "C"], [fused, apart, cast]).to_dict("records")
    assert [(r["layer"], r["op_type"], r["A_ms"], r["B_ms"], r["C_ms"]) for r in rows[:1]] == [
        ("conv +1 fused", "Conv / Conv+Relu", 3.0, 2.5, 4.0)]
    assert (rows[1]["layer"], rows[1]["A_ms"], rows[1]["B_ms"]) == ("fc", 1.0, 2.0)
    assert rows[0]["B_delta_ms"] == -0.5 and rows[1]["B_speedup"] == 0.5 and rows[0]["C_speedup"] == 0.75


def test_the_profile_hint_never_names_a_file_the_user_lacks(tmp_path):
    from controller.measure.compare import profile_hint

    run = {"model_name": "mobilenetv2", "model_path": str(tmp_path / "gone" / "mobilenetv2.onnx"),
           "device_name": "pi4"}
    assert profile_hint(run) == "`farmctl profile MODEL.onnx --device pi4` with the file of model 'mobilenetv2'"
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert profile_hint({**run, "model_path": str(tmp_path / "m.onnx")}) == \
        f"`farmctl profile {tmp_path / 'm.onnx'} --device pi4`"
