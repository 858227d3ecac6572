"""Optimization techniques as a library, one module per technique, usable without the farm:

    from optimizers import Quantizer, MixedPrecisionOptimizer, OperatorFuser, OperatorOptimizer, Profiler
    from optimizers import QATTrainer, convert_to_int8, Pruner, KnowledgeDistiller, LowRankFactorizer

Every ONNX-level technique returns an OptimizedModel: the new .onnx file and an OptimizationRecord
(technique, settings, source digest, what changed, what was skipped and why). Names are imported
lazily so that importing one technique does not pull in the others' dependencies (e.g. torch)."""

from __future__ import annotations

from core.lazy import lazy_exports

_EXPORTS = {
    "Quantizer": "optimizers.quantization",
    "QuantizeConfig": "optimizers.quantization",
    "MixedPrecisionOptimizer": "optimizers.mixed_precision",
    "MeasuredPrecisionOptimizer": "optimizers.measured_precision",
    "OperatorFuser": "optimizers.fusion",
    "OperatorOptimizer": "optimizers.rewrites",
    "matching_rewrites": "optimizers.rewrites",
    "Profiler": "optimizers.profiler",
    "ModelProfile": "optimizers.profiler",
    "evaluate": "optimizers.evaluation",
    "compare_outputs": "optimizers.evaluation",
    "Fidelity": "optimizers.evaluation",
    "Evaluation": "optimizers.evaluation",
    "Metric": "optimizers.metrics",
    "METRICS": "optimizers.metrics",
    "MetricError": "optimizers.metrics",
    "resolve_metric": "optimizers.metrics",
    "load_data": "optimizers.data",
    "ImagePreprocess": "optimizers.data",
    "OptimizedModel": "optimizers.record",
    "OptimizationRecord": "optimizers.record",
    "QATTrainer": "optimizers.qat",
    "convert_to_int8": "optimizers.qat",
    "Pruner": "optimizers.pruning",
    "KnowledgeDistiller": "optimizers.distillation",
    "LowRankFactorizer": "optimizers.low_rank",
    "NASOptimizer": "optimizers.nas",
    "MobileNetV3Space": "optimizers.nas_space",
    "Architecture": "optimizers.nas_space",
    "LatencyTable": "optimizers.nas",
    "EvolutionSettings": "optimizers.nas",
    "count_params": "optimizers.torch_helpers",
    "get_size": "optimizers.torch_helpers",
    "calculate_flops": "optimizers.torch_helpers",
    "calculate_flops_reduction": "optimizers.torch_helpers",
    "export_onnx": "optimizers.torch_helpers",
    "fine_tune": "optimizers.training",
    "train": "optimizers.training",
    "accuracy": "optimizers.training",
    "load_digits_data": "optimizers.digits",
    "pretrained_example": "optimizers.digits",
    "digits_mobilenetv2": "optimizers.digits",
    "digits_student": "optimizers.digits",
    "OptimizerError": "optimizers.errors",
    "UnknownOption": "optimizers.errors",
    "DataMismatch": "optimizers.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
