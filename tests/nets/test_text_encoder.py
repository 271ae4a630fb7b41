"""The frozen text encoder: the bundled MiniLM offline, a tiny saved BertModel by path, and clear errors."""

from __future__ import annotations

import pytest
import torch

from difflab.nets import TextEncoder, default_model_path
from difflab.utils import DifflabError

CAPTIONS = ["a photo of the digit 3", "seven", "a photo of the digit 3", "a handwritten digit eight"]


@pytest.fixture(scope="module")
def minilm():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield TextEncoder()


def test_minilm_loads_offline_from_the_package(minilm):
    assert (default_model_path() / "model.safetensors").is_file()
    assert minilm.dim == 384
    assert not any(p.requires_grad for p in minilm.model.parameters()) and not minilm.model.training


def test_minilm_encodes_captions_with_the_right_mask(minilm):
    context, mask = minilm.encode(CAPTIONS)
    lengths = [len(minilm.tokenizer(c)["input_ids"]) for c in CAPTIONS]  # with [CLS] and [SEP]
    assert context.shape == (4, max(lengths), 384) and context.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.sum(dim=1).tolist() == lengths
    assert mask[:, 0].all() and not mask[1, lengths[1]:].any()
    assert torch.all(context[~mask] == 0)
    torch.testing.assert_close(context[0], context[2])
    n = min(lengths[0], lengths[3])
    assert (context[0, :n] - context[3, :n]).norm() > 1.0  # different captions, different tokens
    # A caption's tokens do not depend on the batch: compare with the model run on it alone.
    alone = minilm.model(**minilm.tokenizer([CAPTIONS[1]], return_tensors="pt")).last_hidden_state[0]
    torch.testing.assert_close(context[1, : lengths[1]], alone, atol=1e-4, rtol=1e-4)


def test_captions_are_encoded_once(minilm, monkeypatch):
    minilm.clear_cache()
    first, _ = minilm.encode(CAPTIONS)
    assert len(minilm._cache) == 3

    def no_model_call(texts):
        raise AssertionError(f"cached captions were encoded again: {texts}")

    monkeypatch.setattr(minilm, "_encode_new", no_model_call)
    again, mask = minilm.encode(CAPTIONS[::-1])
    torch.testing.assert_close(again.flip(0)[:, : first.shape[1]], first)


@pytest.fixture
def tiny_bert_dir(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "digit", "one", "two", "three"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(tmp_path)
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    return tmp_path


def test_a_saved_model_loads_by_path(tiny_bert_dir):
    enc = TextEncoder(tiny_bert_dir, max_length=5)
    assert enc.dim == 16
    context, mask = enc.encode(["a photo", "one two three one two three"])
    assert context.shape == (2, 5, 16)  # the long caption is truncated to max_length
    assert mask.tolist() == [[True] * 4 + [False], [True] * 5]
    assert (context[0, :4] - context[1, :4]).norm() > 0
    fixed = TextEncoder(str(tiny_bert_dir), max_length=8, padding="max_length")
    context, mask = fixed.encode(["a photo"])
    assert context.shape == (1, 8, 16) and mask.sum().item() == 4


def test_a_missing_model_says_where_to_put_the_files(tmp_path, monkeypatch):
    with pytest.raises(DifflabError, match="does not exist: put a Hugging Face model folder"):
        TextEncoder(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DifflabError, match="has no config.json: put a Hugging Face model folder"):
        TextEncoder(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(DifflabError, match="could not load the text encoder .*HF_HOME"):
        TextEncoder(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id is looked up in the local cache only
    with pytest.raises(DifflabError, match="could not load the text encoder 'difflab-tests/no-such-model'"):
        TextEncoder("difflab-tests/no-such-model")


def test_encode_rejects_a_bare_string(tiny_bert_dir):
    with pytest.raises(DifflabError, match="list of strings"):
        TextEncoder(tiny_bert_dir).encode("a photo")
