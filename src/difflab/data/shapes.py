"""Coloured shapes: a procedural, offline text-to-image data set with an exact readout.

An image is one shape on a black background, described by four attributes and a caption
"a {size} {colour} {shape} in the {position}", e.g. "a small red circle in the top left":

* shape: circle, square, triangle (apex up), diamond, cross (arms 1/3 of the half extent wide);
* colour: red, green, blue, yellow, magenta, cyan, white (corners of the RGB cube, >= 2 apart in [-1, 1]
  units, and >= 2 from the background);
* position: a 3 x 3 grid, centres at 0.2, 0.5 and 0.8 of the image side (row-major ids 0..8);
* size: half extent 0.10 (small) or 0.15 (large) of the image side;
plus an integer pixel offset in [-jitter, jitter]^2. A pixel belongs to the shape when its centre lies
inside the shape (hard edges), drawn on coordinate grids for a whole batch at once.

Held-out (shape, colour) pairs test compositional generalization, the "combinatorial creativity" of
seed 000: a text-conditional model trained on `train_combos()` is asked for `holdout_combos()` captions,
and `read_attributes` scores its samples exactly, an exact stand-in for the CLIP score (seed 000).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from difflab.utils.errors import DifflabError, check_choice

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "white")
POSITIONS = (
    "top left", "top middle", "top right",
    "middle left", "center", "middle right",
    "bottom left", "bottom middle", "bottom right",
)  # fmt: skip
SIZES = ("small", "large")
ATTRIBUTES = ("shape", "colour", "position", "size")

PALETTE = torch.tensor(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=torch.float32
)  # RGB in [0, 1], rows follow COLOURS
BACKGROUND = torch.zeros(3)
GRID = torch.tensor([0.2, 0.5, 0.8])  # cell centres, fraction of the image side
HALF_EXTENT = torch.tensor([0.10, 0.15])  # per SIZES, fraction of the image side
# Area of each shape in units of (half extent)^2: pi, 4, 2, 2, and 2 * (2 * 2/3) - (2/3)^2 for the cross.
AREA_FACTOR = torch.tensor([math.pi, 4.0, 2.0, 2.0, 20.0 / 9.0])
CROSS_ARM = 1.0 / 3.0


def max_offset(image_size: int) -> int:
    """The largest pixel offset that keeps a large shape in a corner cell inside the image."""
    return math.floor(float(GRID[0] - HALF_EXTENT[-1]) * image_size + 1e-6)


def shape_caption(shape: int, colour: int, position: int, size: int) -> str:
    """'a small red circle in the top left' from attribute ids."""
    return f"a {SIZES[size]} {COLOURS[colour]} {SHAPES[shape]} in the {POSITIONS[position]}"


def _pixel_centres(image_size: int) -> Tensor:
    return torch.arange(image_size, dtype=torch.float32) + 0.5


def shape_masks(cx: Tensor, cy: Tensor, hx: Tensor, hy: Tensor, image_size: int) -> Tensor:
    """Masks (B, len(SHAPES), H, W) of every shape centred at (cx, cy) (pixels) with half extents (hx, hy).

    In u = (x - cx) / hx, v = (y - cy) / hy (y grows downwards): circle u^2 + v^2 <= 1; square
    max(|u|, |v|) <= 1; triangle v <= 1 and 2 |u| <= v + 1; diamond |u| + |v| <= 1; cross
    min(|u|, |v|) <= 1/3 and max(|u|, |v|) <= 1.
    """
    p = _pixel_centres(image_size)
    u = ((p[None, None, :] - cx[:, None, None]) / hx[:, None, None]).abs()  # (B, 1, W)
    v = (p[None, :, None] - cy[:, None, None]) / hy[:, None, None]  # (B, H, 1), signed
    av = v.abs()
    inside = torch.maximum(u, av) <= 1
    return torch.stack(
        [
            u.square() + av.square() <= 1,
            inside,
            (v <= 1) & (2 * u <= v + 1),
            u + av <= 1,
            (torch.minimum(u, av) <= CROSS_ARM) & inside,
        ],
        dim=1,
    )


def render_shapes(
    shape: Tensor, colour: Tensor, position: Tensor, size: Tensor, offset: Tensor | None = None,
    image_size: int = 32,
) -> Tensor:  # fmt: skip
    """Images (B, 3, image_size, image_size) float32 in [-1, 1] from attribute ids (B,) and offsets (B, 2)."""
    s = float(image_size)
    centre = torch.stack([GRID[position % 3], GRID[position // 3]], dim=1) * s  # (B, 2) as (x, y)
    if offset is not None:
        centre = centre + offset.to(centre.dtype)
    h = HALF_EXTENT[size] * s
    masks = shape_masks(centre[:, 0], centre[:, 1], h, h, image_size)  # (B, K, H, W)
    mask = masks[torch.arange(len(shape)), shape]  # (B, H, W)
    rgb = PALETTE[colour] * 2 - 1  # (B, 3)
    bg = (BACKGROUND * 2 - 1)[None, :, None, None]
    return torch.where(mask[:, None], rgb[:, :, None, None], bg)


def read_attributes(images: Tensor) -> dict[str, Tensor]:
    """Exact readout of shape, colour, position and size ids (B,) int64 from images (B, 3, S, S) in [-1, 1].

    1. Foreground: pixels farther than 1 (half the smallest palette-background distance, 2) from the
       background colour, so Gaussian noise with sigma 0.1 flips none (10 sigma).
    2. colour: the palette entry nearest to the mean foreground colour.
    3. position: the grid cell nearest to the foreground centroid, per axis.
    4. shape: each shape is drawn inside the foreground's bounding box (centre and half extents of the
       box); the one with the highest intersection-over-union with the foreground wins. This matches
       fill ratio (square 1, circle pi/4, others about 1/2) and symmetry (the triangle's mass sits low)
       at once, and reads every rendered shape correctly, pixel phase included.
    5. size: the size whose nominal area AREA_FACTOR[shape] * (HALF_EXTENT * S)^2 is nearest in log.
    Images without foreground get -1 everywhere.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise DifflabError(f"read_attributes needs images of shape (B, 3, S, S); got {tuple(images.shape)}")
    x = images.detach().to("cpu", torch.float32)
    b, _, s, _ = x.shape
    bg = (BACKGROUND * 2 - 1)[None, :, None, None]
    d = x - bg
    mask = d[:, 0].square() + d[:, 1].square() + d[:, 2].square() > 1.0  # (B, S, S): ||x - bg|| > 1
    area = mask.sum((1, 2)).to(torch.float32)  # (B,)
    empty = area == 0
    safe_area = area.clamp_min(1)
    m = mask.to(torch.float32)

    mean_rgb = (x * m[:, None]).sum((2, 3)) / safe_area[:, None]  # (B, 3)
    colour = torch.cdist(mean_rgb, PALETTE * 2 - 1).argmin(1)

    p = _pixel_centres(s)
    cx = (m.sum(1) * p).sum(1) / safe_area  # (B,)
    cy = (m.sum(2) * p).sum(1) / safe_area
    col = (cx[:, None] / s - GRID).abs().argmin(1)
    row = (cy[:, None] / s - GRID).abs().argmin(1)
    position = row * 3 + col

    idx = torch.arange(s)
    rows, cols = mask.any(2), mask.any(1)  # (B, S) each
    y0 = torch.where(rows, idx, s).amin(1)
    y1 = torch.where(rows, idx, -1).amax(1)
    x0 = torch.where(cols, idx, s).amin(1)
    x1 = torch.where(cols, idx, -1).amax(1)
    hx = ((x1 - x0 + 1) / 2).clamp_min(0.5)
    hy = ((y1 - y0 + 1) / 2).clamp_min(0.5)
    templates = shape_masks((x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, hx, hy, s).flatten(2).to(torch.float32)
    inter = torch.bmm(templates, m.reshape(b, -1, 1)).squeeze(2)  # (B, K)
    union = (templates.sum(2) + area[:, None] - inter).clamp_min(1)
    shape = (inter / union).argmax(1)

    nominal = AREA_FACTOR[shape][:, None] * (HALF_EXTENT * s).square()  # (B, len(SIZES))
    size = (safe_area.log()[:, None] - nominal.log()).abs().argmin(1)

    out = {"shape": shape, "colour": colour, "position": position, "size": size}
    return {k: torch.where(empty, -1, v.long()) for k, v in out.items()}


# ---- held-out combinations -------------------------------------------------------------------------
def all_combos() -> list[tuple[int, int]]:
    """Every (shape id, colour id) pair."""
    return [(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))]


def holdout_combos(per_shape: int = 1, seed: int = 0) -> list[tuple[int, int]]:
    """(shape, colour) pairs held out of training, per_shape colours for each shape, sorted.

    A seeded permutation pi of the colours is dealt cyclically: shape s loses colours
    pi[(s * per_shape + j) mod C], j < per_shape. So hold-outs spread evenly over the colours, and
    every shape and every colour still occurs in training (checked).
    """
    n_colours = len(COLOURS)
    if isinstance(per_shape, bool) or not isinstance(per_shape, int) or not 1 <= per_shape < n_colours:
        raise DifflabError(f"per_shape must be an integer in 1..{n_colours - 1}; got {per_shape!r}")
    perm = torch.randperm(n_colours, generator=torch.Generator().manual_seed(seed)).tolist()
    held = sorted(
        (s, perm[(s * per_shape + j) % n_colours]) for s in range(len(SHAPES)) for j in range(per_shape)
    )
    train = set(all_combos()) - set(held)
    if {c for _, c in train} != set(range(n_colours)):
        raise DifflabError(f"per_shape={per_shape} would hold out some colour for every shape; use a smaller value")
    return held


def train_combos(per_shape: int = 1, seed: int = 0) -> list[tuple[int, int]]:
    """The complement of holdout_combos(per_shape, seed), sorted."""
    held = set(holdout_combos(per_shape, seed))
    return [c for c in all_combos() if c not in held]


def _combo_ids(combos: str | Sequence) -> Tensor:
    """(K, 2) long from "all" / "train" / "holdout" or a list of (shape, colour) ids or names."""
    if isinstance(combos, str):
        check_choice("shape combination set", combos, ("all", "holdout", "train"))
        combos = {"all": all_combos, "holdout": holdout_combos, "train": train_combos}[combos]()
    pairs = []
    for pair in combos:
        if len(pair) != 2:
            raise DifflabError(f"each combo must be a (shape, colour) pair; got {pair!r}")
        shape, colour = pair
        shape = SHAPES.index(check_choice("shape", shape, SHAPES)) if isinstance(shape, str) else int(shape)
        colour = COLOURS.index(check_choice("colour", colour, COLOURS)) if isinstance(colour, str) else int(colour)
        if not (0 <= shape < len(SHAPES) and 0 <= colour < len(COLOURS)):
            raise DifflabError(f"combo {pair!r} out of range: shape ids 0..{len(SHAPES) - 1}, colour ids 0..6")
        pairs.append((shape, colour))
    if not pairs:
        raise DifflabError("combos is empty; give at least one (shape, colour) pair")
    return torch.tensor(pairs, dtype=torch.long)


class Shapes(Dataset):
    """n items {"x": (3, size, size) in [-1, 1], "caption": str, "attributes": (4,) int64 (ATTRIBUTES order)}.

    The attributes of all items are drawn once, vectorized, from torch.Generator(seed): (shape, colour)
    uniformly from `combos` ("all", "train", "holdout" or a list of pairs), position and size uniformly,
    and the offset uniformly in [-jitter, jitter]^2. Images are rendered on the fly in __getitem__, or
    for many items at once with `render(indices)`.
    """

    def __init__(self, n: int, seed: int = 0, size: int = 32, combos: str | Sequence | None = None, jitter: int = 1):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DifflabError(f"Shapes needs a positive number of items n; got {n!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise DifflabError(f"Shapes image size must be an integer >= 32 (small shapes blur below); got {size!r}")
        max_jitter = max_offset(size)
        if isinstance(jitter, bool) or not isinstance(jitter, int) or not 0 <= jitter <= max_jitter:
            raise DifflabError(f"jitter must be an integer in 0..{max_jitter} pixels at size {size}; got {jitter!r}")
        self.n, self.seed, self.size, self.jitter = n, seed, size, jitter
        self.combos = _combo_ids("all" if combos is None else combos)
        g = torch.Generator().manual_seed(seed)
        pick = self.combos[torch.randint(len(self.combos), (n,), generator=g)]  # (n, 2)
        position = torch.randint(len(POSITIONS), (n,), generator=g)
        size_id = torch.randint(len(SIZES), (n,), generator=g)
        self.offsets = torch.randint(-jitter, jitter + 1, (n, 2), generator=g)
        self.attributes = torch.stack([pick[:, 0], pick[:, 1], position, size_id], dim=1)  # (n, 4)
        self.data_shape = (3, size, size)
        self.num_classes = None
        self.has_captions = True

    def caption(self, i: int) -> str:
        return shape_caption(*self.attributes[i].tolist())

    def render(self, indices: Tensor | Sequence[int] | slice) -> Tensor:
        """Images (len(indices), 3, size, size) of the given items, in one vectorized call."""
        a = self.attributes[indices]
        return render_shapes(a[:, 0], a[:, 1], a[:, 2], a[:, 3], self.offsets[indices], self.size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not -self.n <= i < self.n:
            raise IndexError(f"item {i} out of range for {self.n} shapes")
        return {"x": self.render([i])[0], "caption": self.caption(i), "attributes": self.attributes[i]}


def held_out_draw(train: Shapes) -> tuple[Tensor, str]:
    """A held-out set for a procedural shapes run: images of a fresh draw (seed + 1, the same n, combos, size
    and jitter) that are not items of `train`, and a description in words.

    Shapes have no test split: with jitter J there are only 5 x 7 x 9 x 2 x (2J + 1)^2 distinct images (5670
    at J = 1), so a fresh draw repeats training items (about n / 5670 of them per item at n << 5670).  An item
    is its (shape, colour, position, size, dx, dy) key, which fixes its image; items whose key occurs in
    `train` are dropped, so the set is "same distribution, not seen in training" -- the memorization
    check's baseline (difflab.metrics.memorization_check)."""
    fresh = Shapes(train.n, seed=train.seed + 1, size=train.size, combos=train.combos.tolist(), jitter=train.jitter)
    unseen = ~torch.isin(_item_keys(fresh), _item_keys(train))
    kept = torch.nonzero(unseen).flatten()
    if len(kept) == 0:
        raise DifflabError(f"every item of a fresh draw of {train.n} shapes occurs in training: no held-out images")
    words = (f"shapes seed {fresh.seed} (n {fresh.n}, the training combos, size and jitter) without the "
             f"{fresh.n - len(kept)} items that occur in training: {len(kept)} images")
    return fresh.render(kept), words


def _item_keys(ds: Shapes) -> Tensor:
    """One int64 per item from its attributes and offset (mixed radix): equal keys <=> equal images."""
    span = 2 * ds.jitter + 1
    key = torch.zeros(ds.n, dtype=torch.long)
    radices = (len(SHAPES), len(COLOURS), len(POSITIONS), len(SIZES))
    for column, radix in enumerate(radices):
        key = key * radix + ds.attributes[:, column]
    for column in range(2):
        key = key * span + ds.offsets[:, column] + ds.jitter
    return key
