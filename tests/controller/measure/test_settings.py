"""Measurement settings: --input-shape NAME=DIMS as farmctl reads it."""

from __future__ import annotations

import pytest

from controller.measure.settings import parse_input_shape


@pytest.mark.parametrize("text, parsed", [("x=1,3,224,224", ("x", [1, 3, 224, 224])),
                                          ("input:0=1x3x8x8", ("input:0", [1, 3, 8, 8]))])
def test_parse_input_shape(text, parsed):
    assert parse_input_shape(text) == parsed
