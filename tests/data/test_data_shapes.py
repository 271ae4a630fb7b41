"""Shapes: determinism, exact geometry, captions, the attribute readout, held-out combinations."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch

from difflab.data.shapes import (
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Shapes,
    all_combos,
    held_out_draw,
    holdout_combos,
    max_offset,
    read_attributes,
    render_shapes,
    shape_caption,
    train_combos,
)
from difflab.utils.errors import DifflabError


def test_deterministic_under_a_seed():
    a, b, c = Shapes(50, seed=7), Shapes(50, seed=7), Shapes(50, seed=8)
    assert torch.equal(a.attributes, b.attributes) and torch.equal(a.render(slice(None)), b.render(slice(None)))
    assert not torch.equal(a.attributes, c.attributes)
    item = a[3]
    assert item["x"].shape == (3, 32, 32) and item["x"].dtype == torch.float32
    assert torch.equal(item["x"], a.render([3])[0]) and torch.equal(item["attributes"], a.attributes[3])
    assert a.data_shape == (3, 32, 32) and a.has_captions and a.num_classes is None


def test_captions_match_attributes():
    assert shape_caption(0, 0, 0, 0) == "a small red circle in the top left"
    assert shape_caption(4, 6, 4, 1) == "a large white cross in the center"
    ds = Shapes(300, seed=1)
    pattern = re.compile(r"a (\w+) (\w+) (\w+) in the ([\w ]+)")
    for i in range(len(ds)):
        size, colour, shape, position = pattern.fullmatch(ds[i]["caption"]).groups()
        parsed = [SHAPES.index(shape), COLOURS.index(colour), POSITIONS.index(position), SIZES.index(size)]
        assert parsed == ds.attributes[i].tolist()


def test_render_geometry_against_direct_pixel_tests():
    # A large square at the centre of a 32-pixel image: centre 16, half extent 0.15 * 32 = 4.8, so the
    # pixel centres 11.5 .. 20.5 are inside: rows and columns 11..20.
    x = render_shapes(torch.tensor([1]), torch.tensor([3]), torch.tensor([4]), torch.tensor([1]))[0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[11:21, 11:21] = True
    assert torch.equal(x[:, inside], torch.tensor([1.0, 1.0, -1.0])[:, None].expand(3, 100))
    assert torch.equal(x[:, ~inside], -torch.ones(3, 32 * 32 - 100))
    # Every shape at every position/size, with an offset: compare with the defining inequalities,
    # evaluated pixel by pixel in plain Python.
    for shape, position, size in [(0, 0, 1), (2, 5, 0), (3, 8, 1), (4, 1, 0), (2, 4, 1)]:
        img = render_shapes(torch.tensor([shape]), torch.tensor([0]), torch.tensor([position]),
                            torch.tensor([size]), torch.tensor([[1, -1]]))[0]  # fmt: skip
        cx = [0.2, 0.5, 0.8][position % 3] * 32 + 1
        cy = [0.2, 0.5, 0.8][position // 3] * 32 - 1
        h = [0.10, 0.15][size] * 32
        for r, c in itertools.product(range(32), range(32)):
            u, v = (c + 0.5 - cx) / h, (r + 0.5 - cy) / h
            rule = [
                u * u + v * v <= 1,
                max(abs(u), abs(v)) <= 1,
                v <= 1 and 2 * abs(u) <= v + 1,
                abs(u) + abs(v) <= 1,
                min(abs(u), abs(v)) <= 1 / 3 and max(abs(u), abs(v)) <= 1,
            ][shape]
            assert bool(img[0, r, c] > 0) == rule, (shape, position, size, r, c)


def _every_attribute_combination(image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.tensor(list(itertools.product(range(5), range(7), range(9), range(2))))  # 630 combinations
    j = max_offset(image_size)
    offsets = torch.randint(-j, j + 1, (len(rows), 2), generator=torch.Generator().manual_seed(seed))
    images = render_shapes(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], offsets, image_size)
    return images, rows


@pytest.mark.parametrize("image_size", [32, 48])
@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_readout_recovers_attributes(image_size, sigma):
    images, truth = _every_attribute_combination(image_size, seed=image_size)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    read = read_attributes(images + sigma * noise)
    for k, name in enumerate(ATTRIBUTES):
        accuracy = (read[name] == truth[:, k]).double().mean().item()
        assert accuracy >= 0.99, (name, accuracy)
        assert read[name].dtype == torch.int64


def test_readout_of_a_dataset_and_of_blank_images():
    ds = Shapes(500, seed=2, combos="train")
    read = read_attributes(ds.render(slice(None)))
    for k, name in enumerate(ATTRIBUTES):
        assert (read[name] == ds.attributes[:, k]).double().mean() >= 0.99
    blank = read_attributes(-torch.ones(2, 3, 32, 32))
    assert all(v.tolist() == [-1, -1] for v in blank.values())
    with pytest.raises(DifflabError, match=r"\(B, 3, S, S\)"):
        read_attributes(torch.zeros(3, 32, 32))


def test_readout_is_not_a_constant():
    # A wrong colour or a moved shape changes the readout: swap red for blue, move left -> right.
    a = render_shapes(torch.tensor([2]), torch.tensor([0]), torch.tensor([3]), torch.tensor([1]))
    b = render_shapes(torch.tensor([2]), torch.tensor([2]), torch.tensor([5]), torch.tensor([1]))
    ra, rb = read_attributes(a), read_attributes(b)
    assert (ra["colour"].item(), ra["position"].item()) == (0, 3)
    assert (rb["colour"].item(), rb["position"].item()) == (2, 5)


def test_holdout_split_is_disjoint_balanced_and_deterministic():
    for per_shape, seed in [(1, 0), (2, 0), (3, 5)]:
        held, train = holdout_combos(per_shape, seed), train_combos(per_shape, seed)
        assert held == holdout_combos(per_shape, seed)
        assert set(held).isdisjoint(train) and sorted(set(held) | set(train)) == all_combos()
        assert len(held) == per_shape * len(SHAPES)
        assert {s for s, _ in train} == set(range(len(SHAPES)))
        assert {c for _, c in train} == set(range(len(COLOURS)))
        per_colour = torch.bincount(torch.tensor([c for _, c in held]), minlength=len(COLOURS))
        assert per_colour.max() - per_colour.min() <= 1
    assert holdout_combos(1, 0) != holdout_combos(1, 1)
    with pytest.raises(DifflabError, match="per_shape"):
        holdout_combos(0)
    with pytest.raises(DifflabError, match="every shape"):
        holdout_combos(6)


def test_datasets_respect_their_combinations():
    held = set(holdout_combos())
    train_pairs = {tuple(p) for p in Shapes(2000, seed=0, combos="train").attributes[:, :2].tolist()}
    held_pairs = {tuple(p) for p in Shapes(200, seed=0, combos="holdout").attributes[:, :2].tolist()}
    assert train_pairs.isdisjoint(held) and train_pairs == set(train_combos())
    assert held_pairs == held
    named = Shapes(20, seed=0, combos=[("circle", "red"), (1, 2)])
    assert {tuple(p) for p in named.attributes[:, :2].tolist()} == {(0, 0), (1, 2)}


def test_bad_arguments():
    with pytest.raises(DifflabError, match="valid shapes are"):
        Shapes(10, combos=[("hexagon", "red")])
    with pytest.raises(DifflabError, match="out of range"):
        Shapes(10, combos=[(0, 9)])
    with pytest.raises(DifflabError, match="valid shape combination sets are: all, holdout, train"):
        Shapes(10, combos="test")
    with pytest.raises(DifflabError, match="positive number"):
        Shapes(0)
    with pytest.raises(DifflabError, match=">= 32"):
        Shapes(10, size=16)
    with pytest.raises(DifflabError, match=r"jitter must be an integer in 0\.\.1"):
        Shapes(10, jitter=2)
    assert max_offset(64) == math.floor(0.05 * 64)


@pytest.mark.parametrize("jitter, n", [(0, 1500), (1, 600)])
def test_held_out_draw_is_the_fresh_draw_without_training_images(jitter, n):
    """Checked by pixels, not keys: kept = the fresh images equal to no training image, in draw order."""
    train = Shapes(n, seed=3, combos="train", jitter=jitter)
    held, words = held_out_draw(train)
    fresh = Shapes(n, seed=4, combos="train", jitter=jitter)
    a = fresh.render(slice(None)).flatten(1).double()
    b = train.render(slice(None)).flatten(1).double()
    seen = (torch.cdist(a, b) == 0).any(1)
    assert 0 < int(seen.sum()) < n  # the case has both kinds (630 distinct images at jitter 0)
    assert torch.equal(held, fresh.render(torch.nonzero(~seen).flatten()))
    assert f"without the {int(seen.sum())} items" in words and f"{n - int(seen.sum())} images" in words
    assert set(map(tuple, fresh.attributes[~seen, :2].tolist())) <= set(train_combos())
