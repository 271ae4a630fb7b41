"""A diffusers pipeline's own tokenizer and text encoder (tokenizer/, text_encoder/ beside unet/), offline.

encode(prompts) -> (context, mask) as difflab.nets.text_encoder.TextEncoder.encode does, in the form Stable
Diffusion's pipeline feeds its UNet: the tokenizer pads to its model_max_length (77 for CLIP), the
encoder's last hidden state is the context (B, L, D), and every position is used (mask all True), padding
tokens included, as the pipeline does. `null()` is the empty prompt's context, SD's unconditional branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError


class PipelineTextEncoder:
    """The tokenizer and text encoder of a pipeline folder (safetensors weights, never downloaded)."""

    def __init__(self, root: Path, device: str = "cpu"):
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise DifflabError("a text pipeline needs transformers: pip install 'difflab[text]'") from err
        self.tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
        self.model = AutoModel.from_pretrained(root / "text_encoder", local_files_only=True, use_safetensors=True)
        self.model = self.model.to(device).eval().requires_grad_(False)
        self.device = device
        self.width = int(self.model.config.hidden_size)

    @staticmethod
    def present(root: Path) -> bool:
        return (root / "tokenizer").is_dir() and (root / "text_encoder" / "config.json").exists()

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        if isinstance(texts, str) or len(texts) == 0:
            raise DifflabError("encode takes a non-empty list of strings (one prompt per sample)")
        ids = self.tokenizer(list(texts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        context = self.model(ids)[0].float()  # (B, L, D): last hidden state
        return context, torch.ones(context.shape[:2], dtype=torch.bool, device=self.device)

    def null(self) -> Tensor:
        """The empty prompt's context (1, L, D)."""
        return self.encode([""])[0]
