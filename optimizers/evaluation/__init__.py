"""Judging a model: accuracy and fidelity against the original (evaluate.py), and task metrics (metrics.py)."""
