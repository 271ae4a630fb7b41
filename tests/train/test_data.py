"""The resumable sampler: epochs are permutations, ranks shard one global batch, positions resume exactly."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from difflab.train import BatchStream, ResumableBatchSampler, TensorBatchDataset, derive_seed
from difflab.train.data import DATA_STREAM
from difflab.utils.errors import DifflabError


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_each_epoch_is_a_permutation_with_a_new_order():
    s = ResumableBatchSampler(num_items=20, batch_size=5, seed=3)
    batches = _take(s, 8)  # two epochs of 4 batches
    epoch0, epoch1 = sum(batches[:4], []), sum(batches[4:], [])
    assert sorted(epoch0) == list(range(20)) and sorted(epoch1) == list(range(20))
    assert epoch0 != epoch1
    g = torch.Generator().manual_seed(derive_seed(3, DATA_STREAM, 0))
    assert epoch0 == torch.randperm(20, generator=g).tolist()  # order = f(seed, epoch) only


def test_ranks_split_the_single_process_global_batch():
    single = _take(ResumableBatchSampler(23, batch_size=6, seed=1), 7)
    ranks = [_take(ResumableBatchSampler(23, 3, 1, rank=r, world_size=2), 7) for r in range(2)]
    for k in range(7):
        assert ranks[0][k] + ranks[1][k] == single[k]
    assert not set(ranks[0][0]) & set(ranks[1][0])


def test_resume_from_a_saved_position():
    s = ResumableBatchSampler(30, 4, seed=5)  # 7 batches per epoch, 2 items dropped
    full = _take(s, 20)
    pos = s.position(11)
    assert pos == {"epoch": 1, "index": 16}
    resumed = ResumableBatchSampler(30, 4, seed=5, start=s.batches_at(pos))
    assert _take(resumed, 9) == full[11:]


def test_batch_stream_resumes_and_normalizes_batches():
    ds = TensorBatchDataset(torch.arange(24.0)[:, None], torch.arange(24) % 3, [f"c{i}" for i in range(24)])
    a = BatchStream(ds, batch_size=4, seed=0)
    first = [next(a) for _ in range(9)]
    assert set(first[0]) == {"x", "label", "caption"}
    assert first[0]["caption"] == [f"c{int(v)}" for v in first[0]["x"][:, 0]]
    b = BatchStream(ds, batch_size=4, seed=0)
    [next(b) for _ in range(4)]
    c = BatchStream(ds, batch_size=4, seed=0)
    c.load_state_dict(b.state_dict())
    for want in first[4:]:
        assert torch.equal(next(c)["x"], want["x"])


def test_a_dataloader_contributes_its_dataset_not_its_order():
    ds = TensorBatchDataset(torch.arange(24.0)[:, None])
    loader = DataLoader(ds, batch_size=5, shuffle=True, collate_fn=lambda b: {"x": b["x"] * 10})
    direct, wrapped = BatchStream(ds, batch_size=4, seed=1), BatchStream(loader, batch_size=4, seed=1)
    for _ in range(7):
        assert torch.equal(next(wrapped)["x"], next(direct)["x"] * 10)  # its collate_fn is kept


def test_plain_iterables_cycle_and_skip_on_resume():
    batches = [(torch.full((2, 1), float(i)), torch.zeros(2, dtype=torch.long)) for i in range(3)]
    s = BatchStream(batches, batch_size=2, seed=0)
    assert [float(next(s)["x"][0, 0]) for _ in range(5)] == [0, 1, 2, 0, 1]
    r = BatchStream(batches, batch_size=2, seed=0)
    r.load_state_dict(s.state_dict())
    assert float(next(r)["x"][0, 0]) == 2.0
    from_dataset = BatchStream(TensorBatchDataset(torch.zeros(8, 1)), batch_size=2, seed=0)
    with pytest.raises(DifflabError, match="another kind of data source"):
        from_dataset.load_state_dict(r.state_dict())
    with pytest.raises(DifflabError, match="no batches"):
        next(BatchStream(iter([]), batch_size=2, seed=0))


def test_too_little_data_is_reported():
    with pytest.raises(DifflabError, match="fewer than one global micro-batch") as e:
        ResumableBatchSampler(5, batch_size=4, seed=0, world_size=2)
    assert "--set train.batch_size=4" in str(e.value)  # the key to change, and a value that fits 5 items
    with pytest.raises(DifflabError, match=r"train.batch_size=16\)?"):
        ResumableBatchSampler(30, batch_size=64, seed=0)
    ResumableBatchSampler(30, batch_size=16, seed=0)  # the suggestion is accepted


class FlippingData(torch.utils.data.Dataset):
    """Items fetched one by one with a random sign from torch's global RNG, like a random flip."""

    def __init__(self, n: int = 40):
        self.x = torch.arange(float(n))[:, None] + 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        flip = torch.rand(()) < 0.5  # the augmentation draw
        return {"x": -self.x[i] if flip else self.x[i]}


def _xs(stream, n):
    return [next(stream)["x"] for _ in range(n)]


def test_augmentation_is_the_same_for_any_worker_count_and_after_resume():
    """Per-item augmentation seeds: 0 or 2 workers, straight or resumed mid-epoch, give the same batches
    (today's workers restart their RNG on resume: the flips differ after it)."""
    straight = _xs(BatchStream(FlippingData(), batch_size=4, seed=2, num_workers=0), 14)
    flips = torch.cat(straight) < 0
    assert 0.3 < flips.double().mean().item() < 0.7  # the augmentation does draw
    workers = BatchStream(FlippingData(), batch_size=4, seed=2, num_workers=2)
    first = _xs(workers, 5)
    resumed = BatchStream(FlippingData(), batch_size=4, seed=2, num_workers=2)
    resumed.load_state_dict(workers.state_dict())
    got = first + _xs(resumed, 9)
    assert all(torch.equal(a, b) for a, b in zip(got, straight, strict=True))
    rank1 = _xs(BatchStream(FlippingData(), batch_size=2, seed=2, rank=1, world_size=2), 3)
    assert all(torch.equal(a, b[2:]) for a, b in zip(rank1, straight, strict=False))  # and any process count


def test_data_draws_leave_the_training_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _xs(BatchStream(FlippingData(), batch_size=4, seed=2), 3)
    assert torch.equal(torch.rand(3), expected)
