#!/usr/bin/env bash
# The TensorRT backend end to end on a machine with an NVIDIA GPU: installs TensorRT's x86 wheels and the CUDA
# runtime into a venv beside the checkout's (or uses the TensorRT already there, e.g. on a Jetson), starts a
# real farm-agent, and benchmarks example:yolov8n through it at FP32 (ONNX Runtime's CUDA provider, where it
# is installed, as the pairing reference), FP16 (the TensorRT backend's default) and INT8 (a Q/DQ model from
# edgefarm's quantizer). Writes its figures to $OUT/gpu_check.json (OUT defaults to ./gpu-check) and prints
# them; docs/benchmarks.md's "TensorRT on a GPU" section gives them with the GPU's name.
#
#   scripts/gpu_check.sh                 # a machine with internet access: pip installs what it needs
#   TRT_VERSION=10.3.0 scripts/gpu_check.sh
#   WHEELS=/path/to/wheels scripts/gpu_check.sh   # an offline machine: pip install --no-index --find-links
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
TRT_VERSION=${TRT_VERSION:-10.16.1.11}
VENV=${VENV:-.venv-gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
log() { echo "[gpu_check] $*" >&2; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" \
  || { log "no NVIDIA GPU (nvidia-smi failed): nothing to check"; exit 2; }
log "GPU: $(cat "$OUT/gpu.txt")"

PIP_FROM=()
[ -n "${WHEELS:-}" ] && PIP_FROM=(--no-index --find-links "$WHEELS")
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  $PY -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet "${PIP_FROM[@]}" -c constraints.txt -e '.[optimize]' 2>&1 | tail -3 >&2 || true
if ! "$VENV/bin/python" -c 'import tensorrt' 2>/dev/null; then
  log "installing tensorrt-cu12==$TRT_VERSION and the CUDA runtime"
  "$VENV/bin/python" -m pip install --quiet "${PIP_FROM[@]}" "tensorrt-cu12==$TRT_VERSION" nvidia-cuda-runtime-cu12 \
    onnxruntime-gpu 2>&1 | tail -3 >&2 || log "warning: some GPU wheels did not install; going on with what is there"
fi
"$VENV/bin/python" - "$OUT" <<'PY'
"""Benchmark example:yolov8n through a real agent on this GPU; write gpu_check.json."""
import json, sys, time, traceback
from pathlib import Path

out = Path(sys.argv[1])
report = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": (out / "gpu.txt").read_text().strip(), "runs": {}}
try:
    import tensorrt
    report["tensorrt"] = tensorrt.__version__
except ImportError as exc:
    report["tensorrt"] = f"not importable: {exc}"
from agent.backends import available_backends
report["backends"] = available_backends()
from controller.measure.api import bench
from controller.measure.examples import example_model
from controller.measure.preflight import check_model
from controller.measure.settings import MeasureSettings
from optimizers.quantization.quantizer import Quantizer

model = example_model("yolov8n")
int8 = out / "yolov8n-int8-qdq.onnx"
settings = MeasureSettings(threads=1, warmup=20, min_iterations=200, min_seconds=3.0)
plans = [("tensorrt-fp16", model, "tensorrt"), ("onnxruntime-fp32", model, "onnxruntime")]
try:
    Quantizer("int8").quantize(model, calibration_data="synthetic", output=int8)
    plans.insert(1, ("tensorrt-int8", int8, "tensorrt"))
except Exception as exc:  # the check goes on without INT8 and says why
    report["runs"]["tensorrt-int8"] = {"error": f"quantizing: {exc!r}"}
for name, path, backend in plans:
    try:
        ref = check_model(path)
        ref.backend = backend
        res = bench(ref, "local", settings, out / "gpu_check.db")
        report["runs"][name] = {"backend": res.backend, "backend_version": res.backend_version,
                                "p50_ms": res.latency_ms["p50"], "p90_ms": res.latency_ms["p90"],
                                "iterations": res.iterations, "flags": res.flags}
    except Exception as exc:
        report["runs"][name] = {"error": repr(exc), "trace": traceback.format_exc()[-1500:]}
    print(name, json.dumps(report["runs"][name])[:300], flush=True)
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
PY
log "figures in $OUT/gpu_check.json"
