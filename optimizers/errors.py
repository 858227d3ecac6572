"""Errors the optimizers raise; each names what is wrong and what to do about it."""

from __future__ import annotations

from core.errors import FarmError, ModelError


class OptimizerError(FarmError):
    """A technique could not be applied as asked."""


class UnknownOption(OptimizerError, ValueError):
    """A method, algorithm, pattern or rewrite name that is not one of the accepted values."""

    def __init__(self, what: str, given: object, accepted) -> None:
        super().__init__(f"unknown {what} {given!r}; accepted values: {', '.join(map(str, accepted))}")
        self.given = given
        self.accepted = list(accepted)


class DataMismatch(OptimizerError, ValueError):
    """Calibration or evaluation data that do not fit the model's inputs."""


__all__ = ["ModelError", "OptimizerError", "UnknownOption", "DataMismatch"]
