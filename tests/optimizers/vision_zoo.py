"""Every `transformers` image-classification architecture that builds offline from a small config (random
weights, no download), each as small as its config allows: 3x64x64 inputs, 10 classes. Left out, with why:
Dinat (needs the natten library), TimmWrapper (needs timm), ImageGPT and ShieldGemma2 (take token ids, not
pixels), CLIP, MetaClip2, Siglip and Siglip2 (vision towers of text-image models, fixed 224x224 position
tables), PPLCNet (its classification head returns no logits from a small config)."""

from __future__ import annotations

TINY_VIT = dict(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64)
STAGES = dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])

CONFIGS: dict[str, dict] = {
    "Beit": TINY_VIT, "Data2VecVision": TINY_VIT, "DeiT": TINY_VIT, "IJepa": TINY_VIT, "ViT": TINY_VIT,
    "ViTMSN": TINY_VIT,
    "Dinov2": {k: v for k, v in TINY_VIT.items() if k != "intermediate_size"},
    "Dinov2WithRegisters": {k: v for k, v in TINY_VIT.items() if k != "intermediate_size"},
    "Bit": dict(embedding_size=16, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1], num_groups=8),
    "ConvNext": dict(image_size=64, **STAGES), "ConvNextV2": dict(image_size=64, **STAGES),
    "RegNet": dict(embedding_size=16, groups_width=8, **STAGES),
    "ResNet": dict(embedding_size=16, layer_type="basic", **STAGES),
    "PoolFormer": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
    "FocalNet": dict(image_size=64, embed_dim=32, depths=[1, 1, 1, 1]),
    "SwiftFormer": dict(image_size=64, depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128]),
    "EfficientNet": dict(image_size=64, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320),
    "MobileNetV1": dict(image_size=64, depth_multiplier=0.25),
    "MobileNetV2": dict(image_size=64, depth_multiplier=0.35),
    "MobileViT": dict(image_size=64, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 160],
                      num_attention_heads=4),
    "MobileViTV2": dict(image_size=64, width_multiplier=0.5, patch_size=1),
    "Cvt": dict(),   # (its per-stage lists must agree in more fields than its defaults show: the default size)
    "Levit": dict(image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2], depths=[1, 1, 1],
                  key_dim=[8, 8, 8]),
    "Pvt": dict(image_size=64, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                num_attention_heads=[1, 1, 2, 2]),
    "PvtV2": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2]),
    "Segformer": dict(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2],
                      decoder_hidden_size=64),
    "Swin": dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 4], window_size=4),
    "Swinv2": dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 4], window_size=4),
    "DonutSwin": dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 4],
                      window_size=4),
    "Hiera": dict(image_size=[64, 64], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]),
    "HGNetV2": dict(),
    "TextNet": dict(),
}
ARCHITECTURES = tuple(CONFIGS)


def build(name: str):
    """`transformers`' NAMEForImageClassification from NAMEConfig(**CONFIGS[name], num_labels=10), eval mode
    (returns an output object with .logits)."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    config = getattr(tf, f"{name}Config")(**CONFIGS[name], num_labels=10)
    return getattr(tf, f"{name}ForImageClassification")(config).eval()
