"""The emulated Raspberry Pi in the farm: `farmctl deploy emu-pi` over SSH as `pi` (the real deploy path:
the wheel of this checkout, pip install of the base extra + LiteRT for aarch64, a background process, the
health wait), `farmctl devices` healthy with arch aarch64, bench and profile of a tiny ONNX model and
bench of a .tflite with LiteRT on it, and `farmctl optimize` over `local` and `emu-pi` together.

Emulated timings mean nothing about a real Pi (qemu-user is ~100x slower than a Pi 4): the tests check
that everything runs on aarch64 and comes back through the farm, never how fast."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import models
from tests.arm64.board import TIMINGS

MODELS = Path(sys.prefix) / "share" / "edgefarm-models"
FAST = ["--threads", "1", "--warmup", "2", "--min-iterations", "10", "--min-seconds", "0.1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _farmctl(folder: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", "--inventory", str(folder / "inventory.yaml"),
                           "--store", str(folder / "results.db"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=folder)


@pytest.fixture(scope="module")
def farm(emulated_board, tmp_path_factory):
    """A folder with inventory.yaml (local + emu-pi, class rpi4-emulated, user pi) and the deploy's output."""
    folder = tmp_path_factory.mktemp("emu-farm")
    agent_port = _free_port()
    (folder / "inventory.yaml").write_text(
        "devices:\n  local:\n    embedded: true\n  emu-pi:\n"
        f"    address: 127.0.0.1:{agent_port}\n    class: rpi4-emulated\n    backends: [onnxruntime, tflite]\n"
        f"    ssh:\n      host: {emulated_board.host}\n      port: {emulated_board.port}\n"
        f"      user: {emulated_board.user}\n      key: {emulated_board.key}\n"
        f"      known_hosts: {emulated_board.known_hosts}\n")
    t0 = time.monotonic()
    deployed = _farmctl(folder, "deploy", "emu-pi", "--timeout", "600")
    TIMINGS["farmctl deploy emu-pi"] = time.monotonic() - t0
    assert deployed.returncode == 0, deployed.stderr[-4000:]
    yield folder, deployed.stderr
    gone = _farmctl(folder, "undeploy", "emu-pi", timeout=300)
    assert gone.returncode == 0, gone.stderr[-2000:]


def test_deploy_installs_the_agent_for_aarch64_as_pi(farm):
    _, err = farm
    assert "emu-pi: aarch64, Python 3.11" in err and "background process" in err     # no systemd in a chroot
    assert "base install + tflite" in err and "emu-pi: farm-agent is up" in err


def test_devices_shows_the_board_healthy_as_aarch64(farm):
    folder, _ = farm
    out = _farmctl(folder, "devices", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    pi = rows["emu-pi"]
    assert pi["status"] == "ok", pi
    assert pi["info"]["arch"] == "aarch64" and pi["class"] == "rpi4-emulated"
    assert pi["info"]["device_class"] == "rpi4-emulated"
    assert {b["name"] for b in pi["info"]["backends"]} >= {"onnxruntime", "tflite"}
    assert rows["local"]["info"]["arch"] == "x86_64"
    table = _farmctl(folder, "devices", timeout=120)
    assert any(line.startswith("emu-pi") and " ok  aarch64 " in line for line in table.stdout.splitlines()), \
        table.stdout


def test_bench_and_profile_an_onnx_model_on_the_board(farm):
    folder, _ = farm
    model = models.conv_model(folder / "tiny_conv.onnx")
    t0 = time.monotonic()
    out = _farmctl(folder, "bench", str(model), "--device", "emu-pi", *FAST, "--json", timeout=900)
    TIMINGS["bench tiny_conv.onnx on emu-pi"] = time.monotonic() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout)
    assert res["device"] == "emu-pi" and res["device_class"] == "rpi4-emulated"
    assert res["backend"] == "onnxruntime" and res["latency_ms"]["p50"] > 0 and res["iterations"] >= 10
    out = _farmctl(folder, "profile", str(model), "--device", "emu-pi", "--iterations", "5", "--warmup", "1",
                   "--json", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    prof = json.loads(out.stdout)
    assert prof["device"] == "emu-pi" and prof["total_ms"] > 0
    # ORT on aarch64 runs Conv+Relu as one NhwcFusedConv kernel named 'conv_token_1' (x86: an NCHWc Conv
    # named after the Relu); the row still maps back to both graph nodes, with their FLOPs
    conv = next(r for r in prof["layers"] if "conv" in r["source_nodes"])
    assert conv["source_nodes"] == ["conv", "relu"] and conv["label"] == "conv +1 fused"
    assert conv["flops"] == 2 * 8 * 32 * 32 * 27 + 8 * 32 * 32


def test_bench_a_tflite_model_with_litert_on_the_board(farm):
    folder, _ = farm
    model = MODELS / "face_detection_short_range.tflite"
    if not model.exists():
        pytest.fail(f"{model} is missing: run `make setup` (scripts/fetch_models.py extracts it)")
    t0 = time.monotonic()
    out = _farmctl(folder, "bench", str(model), "--device", "emu-pi", *FAST, "--json", timeout=900)
    TIMINGS["bench face_detection_short_range.tflite on emu-pi"] = time.monotonic() - t0
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout)
    assert res["device"] == "emu-pi" and res["backend"] == "tflite" and res["latency_ms"]["p50"] > 0


def test_optimize_over_local_and_the_board_chooses_per_device(farm):
    folder, _ = farm
    model = models.conv_model(folder / "opt_conv.onnx")
    t0 = time.monotonic()
    out = _farmctl(folder, "optimize", str(model), "--device", "local", "--device", "emu-pi", "--techniques",
                   "fp16,int8-dynamic", "--confirm-rounds", "0", *FAST, "--out", str(folder / "opt"), "--json",
                   timeout=1800)
    TIMINGS["optimize tiny_conv on local + emu-pi (fp16, int8-dynamic)"] = time.monotonic() - t0
    assert out.returncode in (0, 3), out.stderr[-3000:]      # 3: no candidate beat the baseline somewhere
    doc = json.loads(out.stdout)
    per = {d["device"]: d for d in doc["devices"]}
    assert set(per) == {"local", "emu-pi"}
    for name, result in per.items():
        assert result["baseline"]["latency_ms"]["p50"] > 0, name
        assert {c["name"] for c in result["candidates"]} == {"fp16", "int8-dynamic"}, name
        assert all(c["latency_ms"]["p50"] > 0 for c in result["candidates"]), name
        assert result["chosen"] in {"baseline", "fp16", "int8-dynamic"}   # baseline: nothing was faster there
    report = (folder / "opt" / "report.md").read_text()
    assert "emu-pi" in report and "local" in report
