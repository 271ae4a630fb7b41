"""cond_cat pads token sequences of different lengths; padding is masked, so attention is unchanged."""

import pytest
import torch

from difflab.nets.attention import CrossAttention
from difflab.utils.cond import cond_cat
from difflab.utils.errors import DifflabError


def test_prompt_and_shorter_negative_prompt_concatenate():
    g = torch.Generator().manual_seed(0)
    a = {"context": torch.randn(2, 5, 8, generator=g), "context_mask": torch.ones(2, 5, dtype=torch.bool)}
    b = {"context": torch.randn(2, 3, 8, generator=g), "context_mask": torch.ones(2, 3, dtype=torch.bool)}
    both = cond_cat(a, b)
    assert both["context"].shape == (4, 5, 8) and both["context_mask"].sum(1).tolist() == [5, 5, 3, 3]
    assert torch.equal(both["context"][2:, :3], b["context"]) and both["context"][2:, 3:].abs().sum() == 0
    # masked padding leaves cross-attention on the short sequence exactly as without it
    attn = CrossAttention(16, 8, 2).eval()
    q = torch.randn(2, 7, 16, generator=g)
    short = attn(q, b["context"], b["context_mask"])
    padded = attn(q, both["context"][2:], both["context_mask"][2:])
    torch.testing.assert_close(short, padded)


def test_mismatched_conditions_get_one_clear_message():
    labels = {"class_labels": torch.tensor([1, 2])}
    with pytest.raises(DifflabError, match="cannot concatenate a condition with None: pass a condition dict"):
        cond_cat(labels, None)
    with pytest.raises(DifflabError, match=r"condition keys differ: \['class_labels'\] vs \['drop'\]; give both"):
        cond_cat(labels, {"drop": torch.tensor([True, False])})
    assert cond_cat(None, None) is None
