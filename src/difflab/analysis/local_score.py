"""The local (LS) and equivariant local (ELS) score machines of Kamb & Ganguli 2025.

A convolutional denoiser sees only a P x P patch around each pixel (locality) and applies the same
filter everywhere (equivariance). The Bayes-optimal denoiser under those two constraints, for a training
set {x^n} and a process x_t = alpha x0 + sigma eps, is (Kamb & Ganguli 2025, "An analytic theory of
creativity in convolutional diffusion models", ICML: the LS and ELS machines; seed 000, "creativity as
structured failure"):

LS  (locality only): pixel p is denoised from the posterior over the training patches AT THE SAME place,

    w_n(p) = softmax_n( -||x_t[Omega_p] - alpha x^n[Omega_p]||^2 / (2 sigma^2) ),
    x0_hat(p) = sum_n w_n(p) x^n(p);

ELS (locality + equivariance): from the posterior over training patches FROM EVERY location q,

    w_{n,q}(p) = softmax_{n,q}( -||x_t[Omega_p] - alpha x^n[Omega_q]||^2 / (2 sigma^2) ),
    x0_hat(p) = sum_{n,q} w_{n,q}(p) x^n(q).

Omega_p is the P x P patch centred on p (P odd). Outside the image, patches see the padding: zeros
(truncated patches, like zero-padded convolutions) or circular (a torus, exactly equivariant). A
zero-padded network can tell where the border is, which breaks equivariance there; the
boundary-broken ELS models that by matching a patch only to training patches with the same padding
pattern (the same distances, up to P // 2, to each border): interior patches match interior patches
from anywhere, border patches match patches at the same offset from that border.

Vectorized: ||a - b||^2 = |a|^2 - 2 a.b + |b|^2, and |x_t[Omega_p]|^2 is the same for every candidate, so
the logits are (alpha a.b - alpha^2 |b|^2 / 2) / sigma^2: matrix products of unfolded query patches
with tables of training patches (LS: one table per location, one batched product; ELS: the distinct
patches of each location group, duplicates merged with their multiplicity added as log-count to the
logits, which is exact). The softmax runs over chunks with a running log-sum-exp in float64
(difflab.analysis.ideal.OnlineSoftmax), so memory stays near `max_elements` logits.

The ELS table is built chunk by chunk (distinct patches merged as they come, never the N H W rows of
every patch at once) and kept only while it holds at most `max_table_elements` floats. Past that (many
distinct patches: large P, large N), the ELS machine streams: each call walks the (training image,
location) pairs in chunks of keys gathered from a strided view of the padded images, meets them with
chunks of query patches gathered the same way, and folds the logits into a running log-sum-exp. Its
memory is then O(max_elements) floats (key chunk, query chunk, logit block, each at most
`max_elements`) plus the (B H W) accumulators, whatever P and N are; the result is the same softmax.

The patch size may depend on the noise level: pass an int or a `PatchSchedule` (calibrated against a
trained network by difflab.analysis.creativity.calibrate_patch_sizes).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from difflab.analysis.ideal import (
    DEFAULT_MAX_ELEMENTS,
    SIGMA2_FLOOR,
    OnlineSoftmax,
    PosteriorMeanMachine,
    check_training_images,
)
from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError, check_choice

PADDINGS = ("zeros", "circular")
DEFAULT_MAX_TABLE_ELEMENTS = 2**25  # float64 distinct-patch table kept per ELS patch size (256 MiB)


@dataclass(frozen=True)
class PatchSchedule:
    """Patch size as a function of time: the size calibrated at the nearest of `times`."""

    times: tuple[float, ...]
    sizes: tuple[int, ...]

    def __post_init__(self):
        if len(self.times) == 0 or len(self.times) != len(self.sizes):
            raise DifflabError("a patch schedule needs one size per time and at least one time")

    def size_at(self, t: float) -> int:
        i = min(range(len(self.times)), key=lambda k: abs(self.times[k] - t))
        return int(self.sizes[i])

    def to_dict(self) -> dict:
        return {"times": list(self.times), "sizes": list(self.sizes)}

    @classmethod
    def from_dict(cls, d: dict) -> PatchSchedule:
        return cls(tuple(float(t) for t in d["times"]), tuple(int(s) for s in d["sizes"]))


def check_patch_size(P: int, H: int, W: int, padding: str) -> int:
    if isinstance(P, bool) or not isinstance(P, int) or P < 1 or P % 2 == 0:
        raise DifflabError(f"patch size must be a positive odd integer (1, 3, 5, ...), centred on its pixel; got {P!r}")
    if padding == "circular" and P > min(H, W):
        raise DifflabError(f"a circular patch of size {P} wraps around a {H}x{W} image; use a size <= {min(H, W)}")
    return P


def pad_images(x: Tensor, P: int, padding: str) -> Tensor:
    """x (B, C, H, W) padded by P // 2 on each side with zeros or circularly."""
    r = P // 2
    if r == 0:
        return x
    return F.pad(x, (r, r, r, r), mode="constant" if padding == "zeros" else "circular")


def patch_view(x: Tensor, P: int, padding: str) -> Tensor:
    """Every pixel's patch as a strided view, no copy: (B, C, H, W, P, P); [b, :, i, j] is pixel (i, j)'s
    patch, flattened (channel, row, column) as F.unfold orders it."""
    return pad_images(x, P, padding).unfold(2, P, 1).unfold(3, P, 1)


def gather_patches(view: Tensor, rows: Tensor, L: int, li: Tensor, lj: Tensor) -> Tensor:
    """Patches of the flat (image, location) pairs `rows` (image = row // L, location index = row % L,
    at pixel (li, lj)): (len(rows), C P P), copying only those patches."""
    n, loc = rows // L, rows % L
    return view[n, :, li[loc], lj[loc]].reshape(len(rows), -1)


def unfold_patches(x: Tensor, P: int, padding: str) -> Tensor:
    """Every pixel's patch: (B, H*W, C*P*P), columns ordered (channel, row, column) as F.unfold does."""
    return F.unfold(pad_images(x, P, padding), P).transpose(1, 2)


def location_groups(H: int, W: int, P: int, boundary_broken: bool, device=None) -> Tensor:
    """(H*W,) group ids: pixels whose patches may match each other. One group unless boundary_broken, when
    the id is the padding pattern (min(i, r), min(H-1-i, r), min(j, r), min(W-1-j, r)) with r = P // 2."""
    if not boundary_broken:
        return torch.zeros(H * W, dtype=torch.long, device=device)
    r = P // 2

    def axis(n: int) -> Tensor:
        i = torch.arange(n, device=device)
        return i.clamp(max=r) * (r + 1) + (n - 1 - i).clamp(max=r)

    return (axis(H)[:, None] * (r + 1) ** 2 + axis(W)[None, :]).reshape(-1)


class _PatchMachine(PosteriorMeanMachine):
    """Shared checks: training images (N, C, H, W), a patch size or schedule, a padding."""

    def __init__(self, train: Tensor, process: NoiseProcess, patch_size: int | PatchSchedule,
                 parameterization: str, padding: str, max_elements: int):
        super().__init__(process, parameterization)
        self.train = check_training_images(train)
        if self.train.ndim != 4:
            raise DifflabError(f"local score machines need images (N, C, H, W); got shape {tuple(self.train.shape)}")
        self.padding = check_choice("padding", padding, PADDINGS)
        _, _, H, W = self.train.shape
        sizes = patch_size.sizes if isinstance(patch_size, PatchSchedule) else (patch_size,)
        for P in sizes:
            check_patch_size(P, H, W, self.padding)
        self.patch_size = patch_size
        self.max_elements = int(max_elements)

    def with_patch_size(self, patch_size: int | PatchSchedule):
        """The same machine with another patch size or schedule, sharing the tabulated training patches."""
        _, _, H, W = self.train.shape
        for P in (patch_size.sizes if isinstance(patch_size, PatchSchedule) else (patch_size,)):
            check_patch_size(P, H, W, self.padding)
        other = copy.copy(self)
        other.patch_size = patch_size
        return other

    def patch_at(self, t: float) -> int:
        ps = self.patch_size
        return ps.size_at(t) if isinstance(ps, PatchSchedule) else int(ps)

    def _check_x(self, x: Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.train.shape[1:]):
            raise DifflabError(f"x must have shape (B, {', '.join(map(str, self.train.shape[1:]))}); got {tuple(x.shape)}")


def patch_posterior_mean(q: Tensor, keys: Tensor, half: Tensor, log_count: Tensor, values: Tensor,
                         alpha: float, sigma: float, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Tensor:
    """sum_u softmax_u(l)_u values_u with l_u = (alpha q.k_u - alpha^2 |k_u|^2 / 2) / sigma^2 + log count_u,
    for G independent groups at once: q (G, M, F), keys (G, U, F), half = |k|^2 / 2 (G, U),
    log_count (G, U), values (G, U, C) -> (G, M, C), float64, chunked over U."""
    G, M, _ = q.shape
    inv = 1.0 / max(sigma**2, SIGMA2_FLOOR)
    bias = log_count - alpha**2 * inv * half  # (G, U)
    acc = OnlineSoftmax()
    step = max(1, max_elements // max(1, G * M))
    for lo in range(0, keys.shape[1], step):
        sl = slice(lo, lo + step)
        logits = torch.baddbmm(bias[:, None, sl], q, keys[:, sl].transpose(1, 2), alpha=alpha * inv)  # (G, M, u)
        acc.add(logits, lambda w, v=values[:, sl]: torch.bmm(w, v))  # (G, M, C)
    return acc.mean()


def centre_columns(C: int, P: int) -> Tensor:
    """Columns of an unfolded (C, P, P) patch that hold its centre pixel, one per channel."""
    return torch.arange(C) * P * P + (P // 2) * P + P // 2


class LocalScoreMachine(_PatchMachine):
    """LS machine: each pixel's E[x0] from the posterior over training patches at the same location
    (one batched matrix product over locations: queries (HW, B, F) against keys (HW, N, F)).

    The table (HW, N, F) is kept while it holds at most `max_table_elements` floats; past that the
    posterior is streamed (`stream_posterior_mean`) over blocks of locations and training images."""

    def __init__(self, train: Tensor, process: NoiseProcess, patch_size: int | PatchSchedule,
                 parameterization: str = "x0", *, padding: str = "zeros", max_elements: int = DEFAULT_MAX_ELEMENTS,
                 max_table_elements: int = DEFAULT_MAX_TABLE_ELEMENTS):
        super().__init__(train, process, patch_size, parameterization, padding, max_elements)
        self.max_table_elements = int(max_table_elements)
        self._tables: dict[int, tuple[Tensor, ...]] = {}

    def patch_table(self, P: int) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """Per location: keys (HW, N, C P P), half norms (HW, N), log counts (zeros), centres (HW, N, C);
        None when the keys would exceed max_table_elements floats (stream instead)."""
        N, C, H, W = self.train.shape
        if N * H * W * C * P * P > self.max_table_elements:
            return None
        if P not in self._tables:
            keys = unfold_patches(self.train, P, self.padding).transpose(0, 1).contiguous()  # (HW, N, F)
            self._tables[P] = (keys, 0.5 * (keys**2).sum(-1), torch.zeros(keys.shape[:2], dtype=keys.dtype),
                               keys[..., centre_columns(C, P)].contiguous())
        return self._tables[P]

    def stream_posterior_mean(self, x: Tensor, alpha: float, sigma: float, P: int) -> Tensor:
        """E[x0 | x_t] (B, C, H, W) float64 without a table: blocks of l locations x n training images,
        keys (l, n, F) and queries (l, B, F) gathered from strided views, each block at most max_elements
        floats (queries: B F per location at least), logits folded into a running log-sum-exp per block
        of locations."""
        B, C, H, W = x.shape
        N, F = self.train.shape[0], C * P * P
        inv = 1.0 / max(sigma**2, SIGMA2_FLOOR)
        keys_view = patch_view(self.train.to(x.device), P, self.padding)  # (N, C, H, W, P, P)
        query_view = patch_view(x, P, self.padding)
        centre = centre_columns(C, P).to(x.device)
        nloc = max(1, min(H * W, self.max_elements // (F * B)))
        nimg = max(1, min(N, self.max_elements // (nloc * max(F, B))))
        out = torch.empty(H * W, B, C, dtype=torch.float64, device=x.device)
        for lo in range(0, H * W, nloc):
            locs = torch.arange(lo, min(H * W, lo + nloc), device=x.device)
            li, lj = locs // W, locs % W
            q = query_view[:, :, li, lj].permute(2, 0, 1, 3, 4).reshape(len(locs), B, F)  # (l, B, F)
            acc = OnlineSoftmax()
            for n0 in range(0, N, nimg):
                keys = keys_view[n0:n0 + nimg, :, li, lj].permute(2, 0, 1, 3, 4).reshape(len(locs), -1, F)  # (l, n, F)
                bias = (-0.5 * alpha**2 * inv) * (keys**2).sum(-1)  # (l, n)
                logits = torch.baddbmm(bias[:, None], q, keys.transpose(1, 2), alpha=alpha * inv)  # (l, B, n)
                acc.add(logits, lambda w, v=keys[..., centre]: torch.bmm(w, v))  # (l, B, C)
            out[locs] = acc.mean()
        return out.permute(1, 2, 0).reshape(B, C, H, W)

    def x0_at(self, x: Tensor, alpha: float, sigma: float, t: float) -> Tensor:
        self._check_x(x)
        P = self.patch_at(t)
        B, C, H, W = x.shape
        table = self.patch_table(P)
        if table is None:
            return self.stream_posterior_mean(x, alpha, sigma, P)
        view = patch_view(x, P, self.padding)
        nloc = max(1, min(H * W, self.max_elements // (C * P * P * B)))  # query blocks (l, B, F) <= max_elements
        out = torch.empty(H * W, B, C, dtype=torch.float64, device=x.device)
        for lo in range(0, H * W, nloc):
            locs = torch.arange(lo, min(H * W, lo + nloc), device=x.device)
            q = view[:, :, locs // W, locs % W].permute(2, 0, 1, 3, 4).reshape(len(locs), B, -1)  # (l, B, F)
            out[locs] = patch_posterior_mean(q, *[v[lo:lo + nloc].to(x.device) for v in table], alpha, sigma,
                                             self.max_elements)  # (l, B, C)
        return out.permute(1, 2, 0).reshape(B, C, H, W)


def distinct_rows(keys: Tensor) -> tuple[Tensor, Tensor]:
    """(distinct rows of keys (K, F), inverse (K,)) with keys == distinct[inverse] exactly.

    Rows are grouped by one scalar, their product with a fixed vector of [1, 2) weights (a 1-D sort,
    much faster than torch.unique(dim=0)'s lexicographic one); the grouping is then checked row by row
    and, if two different rows ever shared a scalar, redone with torch.unique(dim=0)."""
    weights = 1.0 + torch.rand(keys.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _, inverse = torch.unique(keys @ weights.to(keys.device, keys.dtype), return_inverse=True)
    first = torch.empty(int(inverse.max()) + 1 if len(keys) else 0, dtype=torch.long, device=keys.device)
    uniq = keys[first.scatter_(0, inverse, torch.arange(len(keys), device=keys.device))]
    if not torch.equal(uniq[inverse], keys):
        uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
    return uniq, inverse


def merge_counts(keys: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct rows of keys (K, F) with their counts summed (counts (K,) float64)."""
    uniq, inverse = distinct_rows(keys)
    return uniq, torch.zeros(len(uniq), dtype=torch.float64, device=keys.device).index_add_(0, inverse, counts)


class EquivariantLocalScoreMachine(_PatchMachine):
    """ELS machine: each pixel's E[x0] from the posterior over training patches from every location
    (boundary_broken: only from locations with the same padding pattern; zero padding only).

    The distinct patches of each location group are tabulated once per patch size, chunk by chunk,
    while the table holds at most `max_table_elements` floats; a group's queries meet only its own table
    (one matrix product per group: one group, or at most (P // 2 + 1)^4 border patterns when
    boundary_broken). A patch size whose table would be larger is streamed (`stream_posterior_mean`):
    memory O(max_elements) whatever P and N are, recomputing the patches on every call."""

    def __init__(self, train: Tensor, process: NoiseProcess, patch_size: int | PatchSchedule,
                 parameterization: str = "x0", *, padding: str = "zeros", boundary_broken: bool = False,
                 max_elements: int = DEFAULT_MAX_ELEMENTS, max_table_elements: int = DEFAULT_MAX_TABLE_ELEMENTS):
        super().__init__(train, process, patch_size, parameterization, padding, max_elements)
        if boundary_broken and self.padding != "zeros":
            raise DifflabError("boundary_broken models zero-padded networks; circular padding has no border")
        self.boundary_broken = bool(boundary_broken)
        self.max_table_elements = int(max_table_elements)
        self._tables: dict[int, list[tuple[Tensor, ...]] | None] = {}

    def _groups(self, P: int, device=None) -> list[Tensor]:
        _, _, H, W = self.train.shape
        groups = location_groups(H, W, P, self.boundary_broken, device)
        return [(groups == g).nonzero()[:, 0] for g in torch.unique(groups).tolist()]

    def _key_rows(self, F: int) -> int:
        """(image, location) pairs per chunk: the key chunk and its logit blocks hold <= max_elements."""
        return max(1, min(math.isqrt(self.max_elements), self.max_elements // F))

    def patch_table(self, P: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] | None:
        """Per location group: its locations (L,), distinct keys (U, C P P), half norms (U,), log counts (U,)
        and centre values (U, C); None when the distinct keys exceed max_table_elements floats (stream)."""
        if P not in self._tables:
            N, C, H, W = self.train.shape
            F = C * P * P
            view = patch_view(self.train, P, self.padding)
            step = max(1, self.max_elements // F)
            table, size = [], 0
            for locs in self._groups(P):
                L = len(locs)
                keys = torch.empty(0, F, dtype=torch.float64)
                counts = torch.empty(0, dtype=torch.float64)
                for lo in range(0, N * L, step):
                    rows = torch.arange(lo, min(N * L, lo + step))
                    chunk = gather_patches(view, rows, L, locs // W, locs % W)
                    keys, counts = merge_counts(torch.cat([keys, chunk]), torch.cat([counts, torch.ones(len(chunk), dtype=torch.float64)]))
                    if size + keys.numel() > self.max_table_elements:
                        self._tables[P] = None
                        return None
                size += keys.numel()
                table.append((locs, keys, 0.5 * (keys**2).sum(1), counts.log(), keys[:, centre_columns(C, P)].contiguous()))
            self._tables[P] = table
        return self._tables[P]

    def stream_posterior_mean(self, x: Tensor, alpha: float, sigma: float, P: int) -> Tensor:
        """E[x0 | x_t] (B, C, H, W) float64 without a table: per location group, key chunks of the
        (training image, location) pairs against query chunks of the (sample, location) pairs, logits
        (alpha q.k - alpha^2 |k|^2 / 2) / sigma^2 folded into one OnlineSoftmax per query chunk."""
        B, C, H, W = x.shape
        N, F = self.train.shape[0], C * P * P
        inv = 1.0 / max(sigma**2, SIGMA2_FLOOR)
        keys_view = patch_view(self.train.to(x.device), P, self.padding)
        query_view = patch_view(x, P, self.padding)
        centre = centre_columns(C, P).to(x.device)
        rows = self._key_rows(F)
        out = torch.empty(B, H * W, C, dtype=torch.float64, device=x.device)
        for locs in self._groups(P, x.device):
            L = len(locs)
            li, lj = locs // W, locs % W
            queries = [torch.arange(lo, min(B * L, lo + rows), device=x.device) for lo in range(0, B * L, rows)]
            accs = [OnlineSoftmax() for _ in queries]
            for lo in range(0, N * L, rows):
                keys = gather_patches(keys_view, torch.arange(lo, min(N * L, lo + rows), device=x.device), L, li, lj)
                bias = (-0.5 * alpha**2 * inv) * (keys**2).sum(1)  # (k,)
                values = keys[:, centre]  # (k, C)
                for acc, q in zip(accs, queries, strict=True):
                    logits = torch.addmm(bias[None], gather_patches(query_view, q, L, li, lj), keys.T, alpha=alpha * inv)
                    acc.add(logits, lambda w, v=values: w @ v)
            out[:, locs] = torch.cat([acc.mean() for acc in accs]).reshape(B, L, C)
        return out.permute(0, 2, 1).reshape(B, C, H, W)

    def x0_at(self, x: Tensor, alpha: float, sigma: float, t: float) -> Tensor:
        self._check_x(x)
        P = self.patch_at(t)
        table = self.patch_table(P)
        if table is None:
            return self.stream_posterior_mean(x, alpha, sigma, P)
        B, C, H, W = x.shape
        view = patch_view(x, P, self.padding)
        rows = max(1, self.max_elements // (C * P * P))  # query chunks (rows, F) <= max_elements
        out = torch.empty(B, H * W, C, dtype=torch.float64, device=x.device)
        for locs, *tab in table:
            locs = locs.to(x.device)
            L, li, lj = len(locs), locs // W, locs % W
            tab = [v.to(x.device)[None] for v in tab]
            parts = [patch_posterior_mean(gather_patches(view, torch.arange(lo, min(B * L, lo + rows), device=x.device),
                                                         L, li, lj)[None], *tab, alpha, sigma, self.max_elements)[0]
                     for lo in range(0, B * L, rows)]  # rows ordered (sample, location)
            out[:, locs] = torch.cat(parts).reshape(B, L, C)
        return out.permute(0, 2, 1).reshape(B, C, H, W)
