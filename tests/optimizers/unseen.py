"""Six ordinary image classifiers built from their published architectures (transformers' configs, random
weights, no download), small: 3x64x64 inputs, 10 classes. The techniques must work on them as they are."""

from __future__ import annotations

ARCHITECTURES = ("resnet", "mobilenetv2", "regnet", "convnext", "efficientnet", "mobilevit")


def build(name: str):
    """A Hugging Face image classifier (returns an output object with .logits), in eval mode."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    small = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_labels": 10}
    configs = {
        "resnet": lambda: tf.ResNetForImageClassification(tf.ResNetConfig(embedding_size=16, layer_type="basic",
                                                                          **small)),
        "mobilenetv2": lambda: tf.MobileNetV2ForImageClassification(
            tf.MobileNetV2Config(depth_multiplier=0.35, image_size=64, num_labels=10)),
        "regnet": lambda: tf.RegNetForImageClassification(tf.RegNetConfig(embedding_size=16, groups_width=8, **small)),
        "convnext": lambda: tf.ConvNextForImageClassification(tf.ConvNextConfig(image_size=64, **small)),
        "efficientnet": lambda: tf.EfficientNetForImageClassification(
            tf.EfficientNetConfig(image_size=64, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320,
                                  num_labels=10)),
        "mobilevit": lambda: tf.MobileViTForImageClassification(
            tf.MobileViTConfig(image_size=64, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 160],
                               num_attention_heads=4, num_labels=10)),
    }
    return configs[name]().eval()
