"""Denoiser networks with one contract, forward(x, c_noise, cond=None) -> a tensor shaped like x.

x is (B, C, H, W) for images or (B, D) for vectors; c_noise (B,) is whatever the denoiser wrapper
feeds (1000 t, or EDM's ln(sigma) / 4); cond follows difflab.utils.cond. Networks know nothing of
processes or parameterizations (difflab.param wraps them). NoisyClassifier, the noise-aware
classifier of classifier guidance, has the same signature but returns logits (B, num_classes).
The frozen text encoder that produces cond["context"] lives here too.
"""

from difflab.nets.attention import CrossAttention, SelfAttention, attend, count_attention_layers
from difflab.nets.classifier import AttentionPool, NoisyClassifier
from difflab.nets.dit import DiT, DiT_models, patchify, sincos_2d, unpatchify
from difflab.nets.embeddings import (
    ClassEmbedding,
    ConditionEmbedding,
    ContextAdapter,
    TimestepEmbedding,
    timestep_embedding,
)
from difflab.nets.mlp import MLPNet
from difflab.nets.registry import NETWORKS, build_network, count_parameters
from difflab.nets.text_encoder import TextEncoder, default_model_path
from difflab.nets.unet import ResBlock, UNet, UNet_models

__all__ = [
    "count_attention_layers",
    "NETWORKS",
    "AttentionPool",
    "ClassEmbedding",
    "ConditionEmbedding",
    "ContextAdapter",
    "CrossAttention",
    "DiT",
    "DiT_models",
    "MLPNet",
    "NoisyClassifier",
    "ResBlock",
    "SelfAttention",
    "TextEncoder",
    "TimestepEmbedding",
    "UNet",
    "UNet_models",
    "attend",
    "build_network",
    "count_parameters",
    "default_model_path",
    "patchify",
    "sincos_2d",
    "timestep_embedding",
    "unpatchify",
]
