"""Resumable, seeded, sharded batches for the trainer.

The order of a map-style data set is a pure function of (seed, epoch): epoch e visits the items in
the permutation drawn by a generator seeded with derive_seed(seed, DATA_STREAM, e). Global micro-batch
k of an epoch is the slice perm[k G : (k + 1) G] with G = world_size * b, and rank r takes its own
b-slice of it, like DistributedSampler but in contiguous blocks, so the union over ranks of one
micro-batch is the same set of items whatever the number of processes. The position of a run is
(epoch, index) with index the number of items of the epoch already consumed: saved in a checkpoint,
it restarts the stream exactly where it stopped.

Random augmentation (a flip drawn from torch's global RNG in a data set's __getitem__) is seeded
per item from (seed, epoch, position j of the item in the epoch's order): torch's global generator
is set to splitmix64(derive_seed(seed, AUG_STREAM, epoch) + j) before the item is fetched (Python's
and NumPy's global generators once per batch, from its first position). So an item's augmentation
depends on nothing else: not on which DataLoader worker fetches it, not on how many workers there
are, not on where a resumed run restarted them, not on the number of processes. A resume with
num_workers=2 repeats the uninterrupted run bit for bit, as with num_workers=0. In the main process
(num_workers=0) the global RNG states are put back after the fetch, so data never draws from the
streams the model uses (dropout).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, default_collate, get_worker_info

from difflab.utils.errors import DifflabError

DATA_STREAM, GLOBAL_STREAM, LOSS_STREAM, LOADER_STREAM, AUG_STREAM = range(5)
_MASK64 = (1 << 64) - 1


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from non-negative integer keys (NumPy SeedSequence: distinct keys, independent streams)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def splitmix64(x: int) -> int:
    """Steele, Lea & Flood's SplitMix64 finalizer (2014): nearby inputs give unrelated 64-bit outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class SeededIndices(list):
    """A batch of item indices that knows its place: item i sits at position start + i of `epoch`'s
    order, and its augmentation seed is splitmix64(base + start + i) with base = derive_seed(seed,
    AUG_STREAM, epoch)."""

    def __init__(self, indices: list[int], base: int, start: int):
        super().__init__(indices)
        self.base, self.start = base, start

    def item_seed(self, i: int) -> int:
        return splitmix64(self.base + self.start + i) >> 1  # 63 bits: torch seeds are signed-safe

    def __reduce__(self):  # to DataLoader workers with the batch's place
        return (SeededIndices, (list(self), self.base, self.start))


class SeededFetch(Dataset):
    """A map-style data set fetched with per-item augmentation seeds (see the module docstring)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.batched = callable(getattr(dataset, "__getitems__", None))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]

    def _fetch(self, batch: SeededIndices):
        first = batch.item_seed(0)
        random.seed(first)
        np.random.seed(first % 2**32)  # noqa: NPY002 (the global state is what data sets draw from)
        if self.batched:  # one fetch for the whole batch: its draws follow from the first item's seed
            torch.default_generator.manual_seed(first)
            return self.dataset.__getitems__(list(batch))
        items = []
        for i, index in enumerate(batch):
            torch.default_generator.manual_seed(batch.item_seed(i))
            items.append(self.dataset[index])
        return items

    def __getitems__(self, batch):
        if not isinstance(batch, SeededIndices):
            return self.dataset.__getitems__(batch) if self.batched else [self.dataset[i] for i in batch]
        if get_worker_info() is not None:  # a worker's RNG serves nothing else
            return self._fetch(batch)
        states = torch.get_rng_state(), random.getstate(), np.random.get_state()  # noqa: NPY002
        try:
            return self._fetch(batch)
        finally:
            torch.set_rng_state(states[0])
            random.setstate(states[1])
            np.random.set_state(states[2])  # noqa: NPY002


def _largest_fit(num_items: int) -> int:
    """A batch size to suggest for a data set of num_items: the largest power of two that fits."""
    return 1 << (max(num_items, 1).bit_length() - 1)


class ResumableBatchSampler(Sampler[list[int]]):
    """Infinite seeded batches of indices for one rank, starting after `start` micro-batches.

    Incomplete global batches at the end of an epoch are dropped (every step sees a full batch).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start: int = 0,
    ):
        self.num_items, self.batch_size, self.seed = int(num_items), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle, self.start = rank, world_size, shuffle, int(start)
        self.global_batch = self.batch_size * world_size
        self.batches_per_epoch = self.num_items // self.global_batch
        if self.batches_per_epoch == 0:
            raise DifflabError(
                f"the data set has {self.num_items} items, fewer than one global micro-batch of "
                f"{self.global_batch} (train.batch_size / train.grad_accum): lower the batch size so it is at most "
                f"{self.num_items} per accumulation step (e.g. --set train.batch_size={_largest_fit(self.num_items)}), "
                "or use more data"
            )

    def permutation(self, epoch: int) -> Tensor:
        """The visiting order of epoch `epoch` (identity when shuffle is off)."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        g = torch.Generator().manual_seed(derive_seed(self.seed, DATA_STREAM, epoch))
        return torch.randperm(self.num_items, generator=g)

    def position(self, batches: int) -> dict:
        """{"epoch", "index"} after `batches` micro-batches: index = items of the epoch consumed."""
        epoch, k = divmod(int(batches), self.batches_per_epoch)
        return {"epoch": epoch, "index": k * self.global_batch}

    def batches_at(self, position: Mapping) -> int:
        """Micro-batches consumed at a saved position (rounded up to a batch boundary if the global
        batch changed since it was saved)."""
        k = -(-int(position["index"]) // self.global_batch)
        return int(position["epoch"]) * self.batches_per_epoch + min(k, self.batches_per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, k = divmod(self.start, self.batches_per_epoch)
        while True:
            perm = self.permutation(epoch)
            base = derive_seed(self.seed, AUG_STREAM, epoch)
            for j in range(k, self.batches_per_epoch):
                lo = j * self.global_batch + self.rank * self.batch_size
                yield SeededIndices(perm[lo : lo + self.batch_size].tolist(), base, lo)
            epoch, k = epoch + 1, 0


class TensorBatchDataset(Dataset):
    """A map-style data set over in-memory tensors that fetches whole batches with one index.

    Items (and batches) are dicts {"x", optional "label", optional "caption"}; DataLoader calls
    `__getitems__` with the batch's indices, so a batch is gathered without a loop over samples.
    """

    def __init__(self, x: Tensor, label: Tensor | None = None, caption: list[str] | None = None):
        n = x.shape[0]
        if (label is not None and label.shape[0] != n) or (caption is not None and len(caption) != n):
            raise DifflabError(f"x has {n} items but labels/captions have a different count")
        self.x, self.label, self.caption = x, label, caption

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict:
        idx = torch.as_tensor(indices, dtype=torch.long)
        batch = {"x": self.x[idx]}
        if self.label is not None:
            batch["label"] = self.label[idx]
        if self.caption is not None:
            batch["caption"] = [self.caption[i] for i in indices]
        return batch


def as_batch(obj) -> dict:
    """A batch dict from a dict, an (x,) / (x, label) pair or a bare tensor of x."""
    if isinstance(obj, Mapping):
        if "x" not in obj:
            raise DifflabError(f"a batch dict needs the key 'x'; got keys {sorted(obj)}")
        return dict(obj)
    if isinstance(obj, Tensor):
        return {"x": obj}
    if isinstance(obj, (list, tuple)) and 1 <= len(obj) <= 2 and isinstance(obj[0], Tensor):
        return {"x": obj[0]} if len(obj) == 1 else {"x": obj[0], "label": obj[1]}
    raise DifflabError(
        f"cannot read a batch from {type(obj).__name__}: yield dicts {{'x', 'label', 'caption'}}, "
        "(x, label) pairs or tensors"
    )


def collate_batch(items) -> dict:
    """Collate for the trainer's DataLoader: pass batched fetches through, default_collate the rest."""
    return as_batch(items if isinstance(items, Mapping) else default_collate(items))


def is_map_style(data) -> bool:
    """True for a map-style torch Dataset (or a DataLoader over one): the trainer owns its order."""
    ds = data.dataset if isinstance(data, DataLoader) else data
    return isinstance(ds, Dataset) and not isinstance(ds, IterableDataset) and hasattr(ds, "__len__")


class BatchStream:
    """The trainer's endless supply of micro-batch dicts, with a resumable position.

    * A map-style Dataset, or a DataLoader over one (its collate_fn and workers are kept, its order
      and batch size replaced): a DataLoader over a ResumableBatchSampler, exactly resumable and
      sharded across ranks.
    * Any other re-iterable of batches: cycled as it is (it must shard itself across ranks); resume
      skips the batches already consumed, which is exact when the iterable is deterministic.
    """

    def __init__(self, data, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, num_workers: int = 0):
        self.data, self.consumed, self._it = data, 0, None
        self.sampler = None
        if is_map_style(data):
            loader = data if isinstance(data, DataLoader) else None
            self.dataset = loader.dataset if loader else data
            self.collate = collate_batch if loader is None or loader.collate_fn is default_collate else loader.collate_fn
            self.num_workers = loader.num_workers if loader else num_workers
            self.sampler = ResumableBatchSampler(len(self.dataset), batch_size, seed, rank, world_size)
            self.loader_seed = derive_seed(seed, LOADER_STREAM, rank)
        elif not isinstance(data, Iterable):
            raise DifflabError(f"training data must be a Dataset, a DataLoader or an iterable of batches; got {data!r}")

    def _iterator(self) -> Iterator:
        if self.sampler is None:
            return itertools.islice(self._cycle(), self.consumed, None)
        self.sampler.start = self.consumed
        # A dedicated generator: DataLoader draws its worker base seed from it, not from the global RNG.
        loader = DataLoader(
            SeededFetch(self.dataset),
            batch_sampler=self.sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.loader_seed),
        )
        return iter(loader)

    def _cycle(self) -> Iterator:
        while True:
            empty = True
            for batch in self.data:
                empty = False
                yield batch
            if empty:
                raise DifflabError(
                    "the training data yielded no batches (a one-shot iterator runs out after one pass): "
                    "pass a Dataset, a DataLoader or another re-iterable"
                )

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict:
        if self._it is None:
            self._it = self._iterator()
        batch = as_batch(next(self._it))
        self.consumed += 1
        return batch

    def state_dict(self) -> dict:
        """{"batches"} for an iterable; {"epoch", "index"} (ResumableBatchSampler.position) for a data set."""
        return {"batches": self.consumed} if self.sampler is None else self.sampler.position(self.consumed)

    def load_state_dict(self, state: Mapping) -> None:
        keys = {"batches"} if self.sampler is None else {"epoch", "index"}
        if set(state) != keys:
            raise DifflabError(
                f"the saved data position {dict(state)} belongs to another kind of data source (a data set "
                "and an iterable of batches keep different positions): resume with the data of the run"
            )
        self.consumed = int(state["batches"]) if self.sampler is None else self.sampler.batches_at(state)
        self._it = None
