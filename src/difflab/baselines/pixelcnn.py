"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders";
seed 000's autoregressive view): an exact likelihood, one network evaluation per pixel and channel.

The image is a sequence in raster order, channels innermost (R < G < B within a pixel, as the paper):

    P(x) = prod_i prod_c P(x_{i,c} | x_{<i}, x_{i,<c}),   each factor a softmax over the L levels,

so log P(x) is the exact sum of log-softmax values at the observed levels (nats per image).

Architecture (the paper's gated blocks with a vertical and a horizontal stack, which removes the blind
spot of the masked k x k stack):

* vertical stack: a (k//2 + 1) x k convolution over the rows above and the current row; it reaches the
  horizontal stack only shifted down one row, so it carries rows < i;
* horizontal stack: a 1 x k masked convolution over the pixels left of the current one and, at the
  current pixel, the channel groups before (type A, first layer) or up to (type B) the output's group;
* gate: y = tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h) with h the class embedding (optional class
  conditioning with a learned null class for condition dropout), a residual 1 x 1 masked-B convolution
  on the horizontal stack;
* head: ReLU, 1 x 1 masked B, ReLU, 1 x 1 masked B to C x L logits.

Hidden features are split into C channel groups (feature o belongs to group o * C // F); a masked
convolution's centre tap connects input group g_in to output group g_out iff g_in < g_out (type A)
or g_in <= g_out (type B) (the paper's RGB masks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.baselines.base import Baseline, check_labels, check_shape, from_levels, labels_of, to_levels
from difflab.utils.errors import DifflabError


def channel_groups(n: int, channels: int, repeat: int = 1) -> Tensor:
    """The channel group (0..channels-1) of each of n * repeat features: feature o of each block of n
    belongs to group o * channels // n (gates split 2F features into two blocks of F)."""
    return (torch.arange(n) * channels // n).repeat(repeat)


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only the past of its output pixel in raster order (PixelCNN masks).

    Taps above the centre row and left of the centre in the centre row are kept; the centre tap keeps
    input group g_in for output group g_out iff g_in < g_out (mask 'A') or g_in <= g_out ('B'); the rest
    are zero. A 1 x k kernel is the gated PixelCNN's horizontal-stack convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], mask_type: str,
                 groups_in: Tensor, groups_out: Tensor):
        kh, kw = kernel_size
        super().__init__(in_channels, out_channels, kernel_size, padding=(kh // 2, kw // 2))
        if mask_type not in ("A", "B"):
            raise DifflabError(f"mask_type must be 'A' or 'B'; got {mask_type!r}")
        mask = torch.zeros(out_channels, in_channels, kh, kw)
        mask[:, :, : kh // 2] = 1  # rows above
        mask[:, :, kh // 2, : kw // 2] = 1  # left of the centre
        allowed = groups_in[None, :] < groups_out[:, None] if mask_type == "A" else groups_in[None, :] <= groups_out[:, None]
        mask[:, :, kh // 2, kw // 2] = allowed.float()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _down_shift(x: Tensor) -> Tensor:
    """Row i <- row i - 1 (zeros in row 0): the vertical stack then sees rows strictly above."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _gate(a: Tensor) -> Tensor:
    """tanh(first half) * sigmoid(second half) over the channel axis."""
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedBlock(nn.Module):
    """One gated layer of both stacks (van den Oord et al. 2016, Fig. 2)."""

    def __init__(self, in_channels: int, hidden: int, channels: int, kernel_size: int, mask_type: str,
                 num_classes: int | None):
        super().__init__()
        k = kernel_size
        g_in = channel_groups(in_channels, channels)
        g2 = channel_groups(hidden, channels, repeat=2)
        self.vertical = nn.Conv2d(in_channels, 2 * hidden, (k // 2 + 1, k))  # padded by hand in forward
        self.pad = (k // 2, k // 2, k // 2, 0)  # left, right, top, bottom: rows i - k//2 .. i
        self.horizontal = MaskedConv2d(in_channels, 2 * hidden, (1, k), mask_type, g_in, g2)
        self.v_to_h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = MaskedConv2d(hidden, hidden, (1, 1), "B", channel_groups(hidden, channels),
                                  channel_groups(hidden, channels))
        self.residual = mask_type == "B"  # the first (A) layer changes the width
        self.embed = nn.Embedding(num_classes + 1, 2 * hidden) if num_classes is not None else None

    def forward(self, v: Tensor, h: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        v_pre = self.vertical(F.pad(v, self.pad))  # (B, 2F, H, W): rows <= i
        h_pre = self.horizontal(h) + self.v_to_h(_down_shift(v_pre))  # past of each pixel only
        if self.embed is not None:
            e = self.embed(labels)[:, :, None, None]  # (B, 2F, 1, 1)
            v_pre, h_pre = v_pre + e, h_pre + e
        h_new = self.h_out(_gate(h_pre))
        return _gate(v_pre), h + h_new if self.residual else h_new


class PixelCNN(Baseline):
    """Gated PixelCNN over data_shape (C, H, W) with `levels` levels; see the module docstring.

    hidden: features per stack (a multiple of C); n_layers gated blocks (the first of type A) with
    kernel_size k; num_classes: optional class conditioning (cond["class_labels"], cond["drop"]; without
    labels a conditional model uses its null class, the unconditional model when trained with
    p_uncond > 0). The defaults have 240k parameters on 8 x 8 digits (hidden=64: 950k, about four
    times the work per image).
    """

    family, has_likelihood = "pixelcnn", True

    def __init__(self, data_shape, levels: int, hidden: int = 32, n_layers: int = 6, kernel_size: int = 5,
                 num_classes: int | None = None):
        super().__init__()
        self.data_shape = check_shape(data_shape, (3,), "pixelcnn")
        if not isinstance(levels, int) or levels < 2:
            raise DifflabError(f"a PixelCNN needs the data's number of levels (digits: 17, 8-bit: 256); got {levels!r}")
        C, H, W = self.data_shape
        if hidden % C or n_layers < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise DifflabError(f"PixelCNN options: hidden must be a multiple of the {C} channels, n_layers >= 1 and "
                               f"kernel_size odd; got hidden={hidden}, n_layers={n_layers}, kernel_size={kernel_size}")
        self.levels, self.num_classes, self.nfe_per_sample = levels, num_classes, C * H * W
        self.blocks = nn.ModuleList(
            GatedBlock(C if i == 0 else hidden, hidden, C, kernel_size, "A" if i == 0 else "B", num_classes)
            for i in range(n_layers)
        )
        g_hidden = channel_groups(hidden, C)
        self.head = nn.ModuleList([
            MaskedConv2d(hidden, hidden, (1, 1), "B", g_hidden, g_hidden),
            MaskedConv2d(hidden, C * levels, (1, 1), "B", g_hidden, torch.arange(C).repeat_interleave(levels)),
        ])

    def logits(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B, C, L, H, W) logits of each pixel-channel's level given its past (x in [-1, 1]). Row i
        depends on rows <= i only, so the top rows of an image may be passed alone (sampling does)."""
        v = h = x
        for block in self.blocks:
            v, h = block(v, h, labels)
        out = self.head[1](F.relu(self.head[0](F.relu(h))))  # (B, C*L, H, W)
        B, C, H, W = x.shape
        return out.view(B, C, self.levels, H, W)

    def _log_probs(self, x: Tensor, labels: Tensor | None, dtype: torch.dtype, check: bool = True) -> Tensor:
        """(B,) sum over pixels and channels of log softmax at the observed levels."""
        j = to_levels(x, self.levels, check)  # (B, C, H, W)
        logp = torch.log_softmax(self.logits(x, labels).to(dtype), dim=2)  # (B, C, L, H, W)
        return logp.gather(2, j.unsqueeze(2)).squeeze(2).flatten(1).sum(1)

    def forward(self, x: Tensor, cond: dict | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The training loss per image: -log P(x) / D in nats per dimension (exact)."""
        labels = labels_of(cond, self.num_classes, x.shape[0], x.device)
        return -self._log_probs(x, labels, torch.float32, check=False) / math.prod(self.data_shape)

    def log_likelihood(self, x: Tensor, *, generator: torch.Generator | None = None, k: int | None = None,
                       labels: Tensor | None = None) -> Tensor:
        """(B,) exact log P(x) in nats per image, float64 (generator and k are unused: nothing is sampled)."""
        check_labels(labels, self.num_classes, x.shape[0])
        labels = labels_of(None, self.num_classes, x.shape[0], x.device) if labels is None else labels.to(x.device)
        return self._log_probs(x, labels, torch.float64)

    @torch.no_grad()
    def draw(self, n: int, draws, device, labels: Tensor | None) -> Tensor:
        """n images drawn level by level in raster order, channels innermost: C*H*W network evaluations,
        each over the whole batch and the rows 0..i of the current row i (the rows below cannot change
        them); level of pixel (c, i, j) = the first l with CDF(l) > u, u uniform from `draws` (inversion)."""
        check_labels(labels, self.num_classes, n)
        labels = labels_of(None, self.num_classes, n, device) if labels is None else labels.to(device)
        C, H, W = self.data_shape
        x = torch.zeros(n, C, H, W, device=device)  # the future is never read (causal masks)
        u = draws.uniform((C, H, W), torch.float64)
        for i in range(H):
            for j in range(W):
                for c in range(C):
                    p = torch.softmax(self.logits(x[:, :, : i + 1], labels)[:, c, :, i, j].double(), dim=1)  # (n, L)
                    level = (p.cumsum(1) <= u[:, c, i, j, None]).sum(1).clamp(max=self.levels - 1)
                    x[:, c, i, j] = from_levels(level, self.levels, x.dtype)
        return x
