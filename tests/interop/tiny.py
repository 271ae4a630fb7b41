"""Tiny randomly initialised diffusers models, created and saved by the tests themselves (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install 'difflab[diffusers]'")

BETAS = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def tiny_unet(seed: int = 0, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, **extra,
    ).eval()


def tiny_cond_unet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
    ).eval()


def tiny_dit(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=4, in_channels=2, out_channels=4, num_layers=1,
        sample_size=8, patch_size=2, num_embeds_ada_norm=5, norm_num_groups=2,
    ).eval()


def tiny_sd3(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=2, num_layers=1, attention_head_dim=4, num_attention_heads=2,
        joint_attention_dim=8, caption_projection_dim=8, pooled_projection_dim=4, out_channels=2,
        pos_embed_max_size=8,
    ).eval()


def save(folder: Path, model: torch.nn.Module, scheduler) -> Path:
    """A model folder with its scheduler_config.json beside config.json and the safetensors weights."""
    model.save_pretrained(folder, safe_serialization=True)
    scheduler.save_pretrained(folder)
    return folder


def tiny_text_pipeline(folder: Path, unet: torch.nn.Module, scheduler) -> Path:
    """A pipeline folder (model_index.json, unet/, scheduler/, tokenizer/, text_encoder/) with a tiny CLIP
    text encoder (width 8 = the UNet's cross_attention_dim) and a letters-only BPE vocabulary."""
    import json
    import string

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    unet.save_pretrained(folder / "unet", safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    letters = list(string.ascii_lowercase)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(letters)},
             **{c + "</w>": 28 + i for i, c in enumerate(letters)}}
    tok = folder / "tok-src"
    tok.mkdir()
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok / "vocab.json"), str(tok / "merges.txt"), model_max_length=8).save_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1)
    CLIPTextModel(config).save_pretrained(folder / "text_encoder", safe_serialization=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder
