"""MLPNet: the denoiser network for low-dimensional data x of shape (B, D) (toy 2-D mixtures, vectors).

A residual MLP with the same conditioning path as the image networks: a sinusoidal time embedding
plus an optional class embedding, added inside every residual block (as ADM adds it to every
ResBlock), and a zero-initialized output layer so the untrained network predicts 0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from difflab.nets.embeddings import ConditionEmbedding
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError

#################################################################################
#                                 Residual block                                #
#################################################################################


class ResidualMLPBlock(nn.Module):
    """h <- h + W_2 Dropout(SiLU(W_1 SiLU(LayerNorm(h)) + E SiLU(emb)))."""

    def __init__(self, dim: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.emb = nn.Linear(emb_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        a = self.fc1(F.silu(self.norm(h))) + self.emb(F.silu(emb))  # (B, H)
        return h + self.fc2(self.dropout(F.silu(a)))  # (B, H)


#################################################################################
#                                    MLPNet                                     #
#################################################################################


class MLPNet(nn.Module):
    """forward(x (B, D), c_noise (B,), cond) -> (B, D).

    x -> Linear -> num_blocks residual blocks conditioned on emb = time(c_noise) [+ class(y)] ->
    LayerNorm -> SiLU -> zero-initialized Linear. Class conditioning (num_classes) follows the cond
    contract (difflab.utils.cond): cond["drop"] selects the learned null class. interval_embedding adds the
    embedding of a second time, cond["interval"] (difflab.nets.embeddings.ConditionEmbedding).
    """

    def __init__(
        self,
        data_dim: int = 2,
        hidden_dim: int = 256,
        num_blocks: int = 4,
        num_classes: int | None = None,
        dropout: float = 0.0,
        frequency_dim: int = 128,
        interval_embedding: bool = False,
    ):
        super().__init__()
        if data_dim < 1 or hidden_dim < 1 or num_blocks < 0:
            raise DifflabError(
                f"MLPNet needs data_dim >= 1, hidden_dim >= 1, num_blocks >= 0; "
                f"got {data_dim}, {hidden_dim}, {num_blocks}"
            )
        self.data_dim = data_dim
        self.cond_embed = ConditionEmbedding(
            hidden_dim, num_classes, frequency_dim=frequency_dim, owner="MLPNet", accepts_context=False,
            interval=interval_embedding,
        )
        self.in_proj = nn.Linear(data_dim, hidden_dim)
        self.blocks = nn.ModuleList(ResidualMLPBlock(hidden_dim, hidden_dim, dropout) for _ in range(num_blocks))
        self.out_norm = nn.LayerNorm(hidden_dim)
        self.out_proj = nn.Linear(hidden_dim, data_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Linear layers keep PyTorch's default (Kaiming-uniform) init; the embeddings start small (DiT).
        self.cond_embed.initialize_weights()
        # Zero-init the output layer: the untrained network predicts 0, the mean of every target.
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise DifflabError(
                f"MLPNet(data_dim={self.data_dim}) takes x of shape (B, {self.data_dim}); got {tuple(x.shape)}: "
                "use UNet or DiT for images, or build MLPNet with data_dim matching the data"
            )
        emb, _, _ = self.cond_embed(c_noise, cond, x.shape[0])  # (B, H)
        h = self.in_proj(x)  # (B, H)
        for block in self.blocks:
            h = block(h, emb)  # (B, H)
        return self.out_proj(F.silu(self.out_norm(h)))  # (B, D)
