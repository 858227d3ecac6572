"""The settings of a quantization run (QuantizeConfig), the op sets static INT8 chooses from, and the
accepted calibration algorithms: shared by the quantizer, its static-INT8 engine and mixed precision."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from optimizers.errors import UnknownOption
from optimizers.quantization.protection import FLOAT_OP_TYPES

PER_CHANNEL_MIN_OPSET = 13
ENTROPY_BINS = 2048
# Static INT8 quantizes by default every op quantize_static knows (op_types=()): its QLinear kernels then
# keep a CNN in INT8 end to end, where a float Add/Mul/Sigmoid (hard-swish and SiLU as exported)
# dequantizes and requantizes every Conv output (YOLOv8n at 1 thread, U8S8, benchmarks/detectors.py: every
# op 1.61x FP32 and 1.02x ONNX Runtime's plain per-channel U8S8 quantize_static, paired; the compute set
# 0.86x of that plain form; S8S8 0.40x). What the graph shows is fragile
# stays float (protection.py): LayerNormalization (transformer outlier channels: all-MiniLM-L6-v2's
# cosine 0.935 -> 0.83 with it in INT8), the residual Adds feeding it, attention masks (one 8-bit scale
# over -3.4e38..0 took MiniLM's cosine to 0.43), and float islands (Silero VAD's STFT magnitude: 0.54
# in INT8, 0.89 float). COMPUTE_OP_TYPES, the earlier default, stays an option and a `farmctl optimize`
# candidate (int8-minmax-compute-ops): measurements decide per model and device.
COMPUTE_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "MaxPool", "AveragePool",
                    "GlobalAveragePool", "Relu", "Clip", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                    "Flatten", "Resize", "Concat", "Split", "Pad", "Slice")
ALGORITHMS = ("minmax", "kl", "entropy", "percentile")  # "kl" and "entropy" are the same method


@dataclass(frozen=True)
class QuantizeConfig:
    """Settings of one quantization run (those that do not apply to a method are ignored by it)."""

    method: str = "int8"
    algorithm: str = "minmax"
    per_channel: bool = True
    # "uint8" (U8S8) or "int8" (S8S8, ONNX Runtime's own default): on this AVX2 x86 CPU U8S8 ran YOLOv8n
    # 2.5x and MobileNetV2 1.3x faster than S8S8 at the same fidelity (ONNX Runtime picks its fast integer
    # kernels by type); `farmctl optimize` also measures S8S8, since an ARM board may prefer it
    activation_type: str = "uint8"
    percentile: float = 99.999          # for algorithm="percentile"
    max_calibration_samples: int = 128
    preprocess: bool = True              # ONNX Runtime's quant_pre_process (shape inference + optimization)
    exclude_nodes: tuple[str, ...] = ()  # node names kept in float
    op_types: tuple[str, ...] = ()  # static INT8: the op types to quantize; () = every op ONNX Runtime
    #                                 knows but FLOAT_OP_TYPES (e.g. COMPUTE_OP_TYPES for the compute ops)
    protect_attention_masks: bool = True  # keep the protected nodes (protection.py) in float
    block_size: int = 128                # INT4: weights per scale
    symmetric: bool = True               # INT4: symmetric blocks (no zero points)

    def settings(self) -> dict:
        return asdict(self)


def static_op_types(cfg: QuantizeConfig) -> list[str]:
    """The op types static INT8 quantizes: cfg.op_types, or every op ONNX Runtime's quantize_static knows
    (its QDQ and QLinear registries, as it does for op_types_to_quantize=None) except FLOAT_OP_TYPES."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return list(cfg.op_types) or sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - set(FLOAT_OP_TYPES))



def check_algorithm(name: str) -> None:
    if name not in ALGORITHMS:
        raise UnknownOption("calibration algorithm", name, ALGORITHMS)
