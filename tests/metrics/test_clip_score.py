"""CLIP score: the offline error path, and the scoring path on a tiny random CLIP saved to a local folder.

No real CLIP checkpoint can be fetched here; a 1-layer CLIP with a byte-level tokenizer exercises the same
code (local loading, torchmetrics CLIPScore, the transformers >= 5 adapter) and is checked against the
cosine similarity computed directly from the model.
"""

from __future__ import annotations

import pytest
import torch

from difflab.metrics import clip_score, load_clip
from difflab.utils import DifflabError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": i + len(chars) for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, projection_dim=16)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=len(vocab) - 2,
                         eos_token_id=len(vocab) - 1, **small),
        vision_config=dict(image_size=32, patch_size=8, **small),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    path = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_missing_model_error_says_how_to_get_one(tmp_path):
    with pytest.raises(DifflabError, match="no CLIP model .* available offline.*pass its path"):
        load_clip(tmp_path / "no-such-clip")
    with pytest.raises(DifflabError, match="available offline"):
        load_clip("difflab-test/not-a-cached-model")


def test_score_matches_cosine_similarity_of_the_embeddings(tiny_clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 16, 16, generator=g) * 2 - 1
    captions = ["a handwritten one", "a handwritten two", "seven", "a handwritten zero", "eight"]
    got = clip_score(images, captions, tiny_clip_dir, batch_size=2)  # 3 batches

    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    u8 = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)
    with torch.no_grad():
        img = model.get_image_features(**processor(images=list(u8), return_tensors="pt")).pooler_output
        txt = model.get_text_features(**processor(text=captions, return_tensors="pt", padding=True)).pooler_output
    expected = max(100 * torch.cosine_similarity(img, txt).mean().item(), 0.0)
    assert expected > 0 and got == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_caption_count_must_match(tiny_clip_dir):
    with pytest.raises(DifflabError, match="one caption per image: 2 images, 1 captions"):
        clip_score(torch.zeros(2, 1, 8, 8), ["one"], tiny_clip_dir)
