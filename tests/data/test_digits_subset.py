"""digits first=N / repeat=k: the first N training images, each listed k times (issue 15's size sweep)."""

import pytest
import torch

from difflab.data import build_dataset, load_digits
from difflab.utils.errors import DifflabError


def test_first_keeps_the_first_images_and_repeat_lists_each_k_times():
    images, labels = load_digits("train")
    ds = build_dataset("digits", first=10, repeat=3)
    assert len(ds) == 30 and ds.data_shape == (1, 8, 8) and ds.num_classes == 10
    assert torch.equal(ds.x[0::3], images[:10]) and torch.equal(ds.x[2::3], images[:10])
    assert torch.equal(ds.labels, labels[:10].repeat_interleave(3))
    assert torch.unique(ds.x.flatten(1), dim=0).shape[0] == torch.unique(images[:10].flatten(1), dim=0).shape[0]
    assert torch.equal(build_dataset("digits", first=len(images)).x, images)


@pytest.mark.parametrize(("options", "message"), [
    ({"first": 0}, "digits first must be an integer in 1..1437"),
    ({"first": 2000}, "digits first must be an integer in 1..1437"),
    ({"first": 2.5}, "digits first must be an integer"),
    ({"repeat": 0}, "digits repeat must be a positive integer"),
    ({"repeat": True}, "digits repeat must be a positive integer"),
])
def test_bad_first_or_repeat_is_one_message(options, message):
    with pytest.raises(DifflabError, match=message):
        build_dataset("digits", **options)
