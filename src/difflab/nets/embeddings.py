"""Embeddings of the noise level, the class label and the text context, shared by every network.

The conditioning contract is difflab.utils.cond: `cond` is None or a dict with "class_labels" (B,),
"context" (B, L, D_text), "context_mask" (B, L) and "drop" (B,). Where "drop" is True a network uses
its LEARNED null condition (a null class row, learned null context tokens), which is how condition
dropout and classifier-free guidance (Ho & Salimans 2022; seed 000 "Classifier-Free Guidance", seed 001)
work without the network knowing about them. A conditional network given no condition at all uses
the null condition for every sample: that is its unconditional model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError

#################################################################################
#                         Sinusoidal timestep embedding                         #
#################################################################################


def timestep_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of the noise level (Vaswani et al. 2017 §3.5; Ho et al. 2020 §4; seed 004).

    With half = dim // 2 and frequencies w_k = max_period^(-k / half), k = 0..half-1:
    emb(c) = [cos(c w_0), ..., cos(c w_{half-1}), sin(c w_0), ..., sin(c w_{half-1})] (ADM / DiT order),
    zero-padded by one column when dim is odd. The frequencies span 1 down to 1/max_period, so the
    embedding separates noise levels both on DDPM's step scale (c = 1000 t) and on EDM's
    c = ln(sigma) / 4 (Karras et al. 2022, Table 1), where the fast frequencies do the work.
    Computed in float32 whatever the input dtype. c_noise: (B,) -> (B, dim).
    """
    half = dim // 2
    k = torch.arange(half, device=c_noise.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / half)  # (half,)
    args = c_noise.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (B, dim)
    return emb


class TimestepEmbedding(nn.Module):
    """c_noise -> sinusoidal features -> Linear -> SiLU -> Linear (DiT's TimestepEmbedder, ADM's time_embed)."""

    def __init__(self, dim: int, frequency_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        self.frequency_dim, self.max_period = frequency_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        freq = timestep_embedding(c_noise, self.frequency_dim, self.max_period)  # (B, F)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, dim)


#################################################################################
#                            Class and text conditions                          #
#################################################################################


class ClassEmbedding(nn.Module):
    """A table of num_classes + 1 learned rows; row num_classes is the null class used where drop is True.

    DiT's LabelEmbedder (Peebles & Xie 2023) with the dropout decision taken outside, in cond["drop"].
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        if num_classes < 1:
            raise DifflabError(f"num_classes must be a positive integer; got {num_classes!r}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: Tensor | None, drop: Tensor | None = None, batch: int | None = None) -> Tensor:
        """labels (B,) long, drop (B,) bool or None -> (B, dim); labels None = the null row for `batch` samples."""
        if labels is None:
            labels = torch.full((batch,), self.num_classes, device=self.table.weight.device, dtype=torch.long)
        elif drop is not None:
            labels = torch.where(drop, self.num_classes, labels)  # (B,)
        return self.table(labels)  # (B, dim)


class ContextAdapter(nn.Module):
    """Text-encoder tokens (B, L, D_text) -> model-width tokens, led by learned null tokens.

    tokens = [n_1..n_K, W LayerNorm(c_1), ..., W LayerNorm(c_L)], mask = [1..1, m_1, ..., m_L] with
    m_j = context_mask_j and not drop. The K null tokens are always visible, like the [CLS]/[SEP]
    tokens of an empty caption in Stable Diffusion's null prompt; where drop is True (or a row has no
    real token) attention sees only them, so the dropped output is the learned null condition and
    never depends on the dropped caption. Masked tokens must be ignored by the attention that reads
    these tokens (attention.CrossAttention does, with the returned mask).
    """

    def __init__(self, context_dim: int, dim: int, num_null_tokens: int = 1):
        super().__init__()
        if num_null_tokens < 1:
            raise DifflabError(f"num_null_tokens must be >= 1 (the null condition); got {num_null_tokens!r}")
        self.context_dim = context_dim
        self.norm = nn.LayerNorm(context_dim)
        self.proj = nn.Linear(context_dim, dim)
        self.null_tokens = nn.Parameter(0.02 * torch.randn(num_null_tokens, dim))

    def null(self, batch: int) -> tuple[Tensor, Tensor]:
        """The null condition alone: tokens (batch, K, dim) and an all-True mask (batch, K)."""
        tokens = self.null_tokens[None].expand(batch, -1, -1)  # (B, K, dim)
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    def forward(
        self, context: Tensor | None, mask: Tensor | None = None, drop: Tensor | None = None, batch: int = 0
    ) -> tuple[Tensor, Tensor]:
        """(B, L, D_text), (B, L) bool, (B,) bool -> tokens (B, K + L, dim), mask (B, K + L) bool."""
        if context is None:
            return self.null(batch)
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise DifflabError(
                f"context must have shape (B, L, {self.context_dim}); got {tuple(context.shape)}: encode the "
                f"captions with the text encoder the network was built for (context_dim={self.context_dim})"
            )
        B, L = context.shape[:2]
        null_tokens, null_mask = self.null(B)  # (B, K, dim), (B, K)
        tokens = self.proj(self.norm(context.to(self.proj.weight.dtype)))  # (B, L, dim)
        keep = torch.ones(B, L, dtype=torch.bool, device=context.device) if mask is None else mask.bool()
        if drop is not None:
            keep = keep & ~drop[:, None]  # (B, L)
        return torch.cat([null_tokens, tokens], dim=1), torch.cat([null_mask, keep], dim=1)


#################################################################################
#                   Everything a network is conditioned on                      #
#################################################################################


class ConditionEmbedding(nn.Module):
    """(c_noise, cond) -> (emb (B, dim), context tokens (B, K+L, context_width) or None, mask or None).

    emb = TimestepEmbedding(c_noise) + ClassEmbedding(label or null) [+ TimestepEmbedding'(cond["interval"])];
    the context goes through a ContextAdapter. Built without num_classes / context_dim / interval (or for a
    network that takes no text, accepts_context=False), it rejects those conditions with one message that
    names the fix.

    interval=True adds a second time, the length t - r of the interval an average-velocity model (MeanFlow,
    Geng et al. 2025, who embed (t, t - r)) integrates over, given as cond["interval"] (B,) on the scale of
    c_noise (NetworkDenoiser multiplies both by its time_scale). Its last layer starts at zero, so a network built
    from a trained flow's weights starts as that flow (u(z, t, t) = v(z, t)); a cond without an interval adds
    nothing (once trained, not the same as an interval of 0).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int | None = None,
        context_dim: int | None = None,
        context_width: int | None = None,
        num_null_tokens: int = 1,
        frequency_dim: int = 256,
        owner: str = "network",
        accepts_context: bool = True,
        interval: bool = False,
    ):
        super().__init__()
        self.owner, self.accepts_context = owner, accepts_context
        self.time = TimestepEmbedding(dim, frequency_dim)
        self.interval = TimestepEmbedding(dim, frequency_dim) if interval else None
        self.label = ClassEmbedding(num_classes, dim) if num_classes is not None else None
        self.context = (
            ContextAdapter(context_dim, context_width or dim, num_null_tokens) if context_dim is not None else None
        )

    def initialize_weights(self) -> None:
        # DiT's choice: the embedding MLP, the class table and the null tokens start as N(0, 0.02^2).
        nn.init.normal_(self.time.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time.mlp[2].weight, std=0.02)
        if self.label is not None:
            nn.init.normal_(self.label.table.weight, std=0.02)
        if self.context is not None:
            nn.init.normal_(self.context.null_tokens, std=0.02)
        if self.interval is not None:  # the interval's embedding starts at zero: the model starts as a flow
            nn.init.normal_(self.interval.mlp[0].weight, std=0.02)
            nn.init.zeros_(self.interval.mlp[2].weight)
            nn.init.zeros_(self.interval.mlp[2].bias)

    def _check(self, cond: Cond) -> None:
        if self.interval is None and cond.get("interval") is not None:
            raise DifflabError(
                f"this {self.owner} was built without an interval embedding but got cond['interval']: build it "
                "with interval_embedding=True (model.objective=meanflow does), or sample it with another sampler"
            )
        if self.label is None and cond.get("class_labels") is not None:
            raise DifflabError(
                f"this {self.owner} was built without class conditioning but got class_labels: "
                "build it with num_classes=<number of classes>, or drop 'class_labels' from cond"
            )
        if not self.accepts_context and cond.get("context") is not None:
            raise DifflabError(
                f"{self.owner} takes no text context: use UNet or DiT built with context_dim=<text encoder "
                "width> for text conditioning, or drop 'context' from cond"
            )
        if self.context is None and cond.get("context") is not None:
            raise DifflabError(
                f"this {self.owner} was built without text conditioning but got a context: build it with "
                "context_dim=<text encoder width> (TextEncoder.dim), or drop 'context' from cond"
            )

    def forward(self, c_noise: Tensor, cond: Cond | None, batch: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        c_noise = torch.as_tensor(c_noise, device=self.time.mlp[0].weight.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(batch)
        if c_noise.shape != (batch,):
            raise DifflabError(f"c_noise must have shape ({batch},) to match x; got {tuple(c_noise.shape)}")
        cond = cond or {}
        self._check(cond)
        drop = cond.get("drop")
        emb = self.time(c_noise)  # (B, dim)
        if self.label is not None:
            emb = emb + self.label(cond.get("class_labels"), drop, batch)  # (B, dim)
        if self.interval is not None and cond.get("interval") is not None:
            interval = torch.as_tensor(cond["interval"], device=c_noise.device)
            if interval.shape != (batch,):
                raise DifflabError(f"cond['interval'] must have shape ({batch},); got {tuple(interval.shape)}")
            emb = emb + self.interval(interval)  # (B, dim)
        if self.context is None:
            return emb, None, None
        tokens, mask = self.context(cond.get("context"), cond.get("context_mask"), drop, batch)
        return emb, tokens, mask
