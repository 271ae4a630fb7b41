"""The conditions `difflab sample` builds: labels and prompts checked with one message each."""

import pytest
import torch

from difflab.jobs.generate import build_cond
from difflab.jobs.runs import RunMeta
from difflab.utils.errors import DifflabError


class WordCount:
    """A stand-in text encoder: one token per word, width 4 (build_cond only needs .encode)."""

    dim = 4

    def encode(self, texts):
        L = max(len(t.split()) for t in texts)
        mask = torch.tensor([[i < len(t.split()) for i in range(L)] for t in texts])
        return mask[..., None].float().expand(-1, -1, 4), mask


UNCOND, CLASS, TEXT = RunMeta((1, 8, 8), None, None), RunMeta((1, 8, 8), 10, None), RunMeta((3, 32, 32), None, 4)


def test_labels_and_prompts_become_the_condition():
    c = build_cond(None, CLASS, 4, [7], None, None, "cpu")
    assert c["class_labels"].tolist() == [7, 7, 7, 7]
    assert build_cond(None, CLASS, 3, None, None, None, "cpu")["class_labels"].tolist() == [0, 1, 2]
    c = build_cond(None, TEXT, 2, None, ["a red circle", "a blue square at the bottom"], WordCount(), "cpu")
    assert c["context"].shape == (2, 6, 4) and c["context_mask"].sum(1).tolist() == [3, 6]
    assert build_cond(None, UNCOND, 5, None, None, None, "cpu") is None


@pytest.mark.parametrize(
    "meta, labels, prompts, encoder, message",
    [
        (CLASS, [10], None, None, "outside"),
        (CLASS, [-1], None, None, "outside"),
        (UNCOND, [3], None, None, "not class-conditional"),
        (UNCOND, None, ["a red circle"], None, "not text-conditional"),
        (TEXT, None, ["   "], WordCount(), "prompt is empty"),
        (TEXT, None, None, WordCount(), "give a prompt"),
    ],
)
def test_bad_conditions_get_one_message(meta, labels, prompts, encoder, message):
    with pytest.raises(DifflabError, match=message):
        build_cond(None, meta, 4, labels, prompts, encoder, "cpu")
