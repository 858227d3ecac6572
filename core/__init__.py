"""The small layer below everything (numpy only): the error root, model input specs and shape resolution,
and where edgefarm keeps its files. The agent, the optimizers and the controller all build on it; it
imports none of them (tests/test_layering.py checks). The tensor codec lives with the wire contract
in protos/tensors.py, since it turns protos' Tensor messages into arrays."""
