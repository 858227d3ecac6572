"""What the fleet tests share: short measurement settings for the jobs they send to real agents."""

from __future__ import annotations

from controller.measure.settings import MeasureSettings

FAST = MeasureSettings(threads=1, warmup=2, min_iterations=20, min_seconds=0.05)
