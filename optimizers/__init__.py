"""Optimization techniques as a library, one folder per topic (quantization, graph, pytorch, nas, data, evaluation),
usable without the farm:

    from optimizers import Quantizer, MixedPrecisionOptimizer, OperatorFuser, OperatorOptimizer, Profiler
    from optimizers import QATTrainer, convert_to_int8, Pruner, KnowledgeDistiller, LowRankFactorizer

Every ONNX-level technique returns an OptimizedModel: the new .onnx file and an OptimizationRecord
(technique, settings, source digest, what changed, what was skipped and why). Names are imported
lazily so that importing one technique does not pull in the others' dependencies (e.g. torch)."""

from __future__ import annotations

from core.lazy import lazy_exports

_EXPORTS = {
    "Quantizer": "optimizers.quantization.quantizer",
    "QuantizeConfig": "optimizers.quantization.quantizer",
    "MixedPrecisionOptimizer": "optimizers.quantization.mixed_precision",
    "MeasuredPrecisionOptimizer": "optimizers.quantization.measured_precision",
    "OperatorFuser": "optimizers.graph.fusion",
    "OperatorOptimizer": "optimizers.graph.rewrites",
    "matching_rewrites": "optimizers.graph.rewrites",
    "Profiler": "optimizers.profiler",
    "ModelProfile": "optimizers.profiler",
    "evaluate": "optimizers.evaluation.evaluate",
    "compare_outputs": "optimizers.evaluation.evaluate",
    "Fidelity": "optimizers.evaluation.evaluate",
    "Evaluation": "optimizers.evaluation.evaluate",
    "Metric": "optimizers.evaluation.metrics",
    "METRICS": "optimizers.evaluation.metrics",
    "MetricError": "optimizers.evaluation.metrics",
    "resolve_metric": "optimizers.evaluation.metrics",
    "load_data": "optimizers.data.feeds",
    "ImagePreprocess": "optimizers.data.feeds",
    "OptimizedModel": "optimizers.record",
    "OptimizationRecord": "optimizers.record",
    "QATTrainer": "optimizers.quantization.qat",
    "convert_to_int8": "optimizers.quantization.qat",
    "Pruner": "optimizers.pytorch.pruning",
    "KnowledgeDistiller": "optimizers.pytorch.distillation",
    "LowRankFactorizer": "optimizers.pytorch.low_rank",
    "NASOptimizer": "optimizers.nas.search",
    "MobileNetV3Space": "optimizers.nas.space",
    "Architecture": "optimizers.nas.space",
    "LatencyTable": "optimizers.nas.search",
    "EvolutionSettings": "optimizers.nas.search",
    "count_params": "optimizers.pytorch.helpers",
    "get_size": "optimizers.pytorch.helpers",
    "calculate_flops": "optimizers.pytorch.helpers",
    "calculate_flops_reduction": "optimizers.pytorch.helpers",
    "export_onnx": "optimizers.pytorch.helpers",
    "fine_tune": "optimizers.pytorch.training",
    "train": "optimizers.pytorch.training",
    "accuracy": "optimizers.pytorch.training",
    "load_digits_data": "optimizers.data.digits",
    "pretrained_example": "optimizers.data.digits",
    "digits_mobilenetv2": "optimizers.data.digits",
    "digits_student": "optimizers.data.digits",
    "OptimizerError": "optimizers.errors",
    "UnknownOption": "optimizers.errors",
    "DataMismatch": "optimizers.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
