"""Optimization techniques as a library (quantization, pruning, ...); each technique is one module.

Nothing is exported yet: the techniques arrive with their own issues."""
