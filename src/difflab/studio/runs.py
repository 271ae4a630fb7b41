"""The runs a studio serves: ids chosen by the server, never paths from the browser.

`RunTable` maps short ids (the folder name, made unique) to the run folders given on the command line
(or found one level under a folder). The page only ever sends an id; the files it may read of a run are
the fixed names in RUN_FILES. Loaded models are kept, one per run, for the life of the server.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from difflab.jobs.runs import LoadedRun, load_run, read_meta
from difflab.train.checkpoint import read_config
from difflab.utils.errors import DifflabError

#: the only files of a run folder the page can fetch: public name -> file name in RUN/
RUN_FILES = {"loss.png": "loss.png", "preview.png": "samples.png"}
PAGE_N = 16  # the page's default number of images (the run's sample.n when smaller)


def find_runs(paths: list[Path]) -> list[Path]:
    """The run folders among `paths`: a folder with run.json is a run, any other folder contributes the
    runs directly inside it. One DifflabError when a path is missing or holds no run."""
    runs: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise DifflabError(f"{path} is not a folder: give run folders written by `difflab train`, or a folder "
                               "that holds them")
        if (path / "run.json").is_file():
            runs.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if (p / "run.json").is_file())
        if not inside:
            raise DifflabError(f"{path} holds no difflab run (no run.json in it or its subfolders); train one "
                               f"with `difflab train digits --out {path / 'digits'}`")
        runs.extend(inside)
    if not runs:
        raise DifflabError("no runs given: `difflab studio RUN [RUN ...]` or `difflab studio runs/`")
    return runs


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "run"


class RunTable:
    """id -> run folder, with lazily loaded models (one load per run, guarded by a lock)."""

    def __init__(self, paths: list[Path], device: str = "cpu"):
        self.device = device
        self.paths: dict[str, Path] = {}
        for path in find_runs(paths):
            base = rid = _slug(path.name)
            k = 2
            while rid in self.paths:
                rid, k = f"{base}-{k}", k + 1
            self.paths[rid] = path.resolve()
        self._loaded: dict[str, LoadedRun] = {}
        self._lock = threading.Lock()

    def path(self, rid: str) -> Path:
        if rid not in self.paths:
            raise KeyError(rid)
        return self.paths[rid]

    def load(self, rid: str) -> LoadedRun:
        with self._lock:
            if rid not in self._loaded:
                self._loaded[rid] = load_run(self.path(rid), device=self.device)
            return self._loaded[rid]

    def file(self, rid: str, name: str) -> Path | None:
        """RUN/<RUN_FILES[name]> when it exists, else None; KeyError for an unknown id or name."""
        path = self.path(rid) / RUN_FILES[name]
        return path if path.is_file() else None

    def summary(self, rid: str) -> dict:
        """What the runs tab shows: config, parameter count, shape, conditions, the run's sample defaults."""
        loaded = self.load(rid)
        meta = read_meta(self.path(rid))
        s = loaded.config.sample
        return {
            "id": rid, "name": self.path(rid).name, "checkpoint": loaded.checkpoint.name,
            "config": read_config(loaded.checkpoint),
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "data_shape": list(meta.data_shape), "kind": "image" if len(meta.data_shape) == 3 else "points",
            "num_classes": meta.num_classes, "class_names": meta.class_names,
            "text": loaded.text_encoder is not None,
            "defaults": {"sampler": s.sampler, "steps": s.steps, "schedule": s.schedule, "seed": s.seed,
                         "n": min(s.n, PAGE_N), "guidance": s.guidance,
                         "options": [f"{k}={v}" for k, v in s.options.items()]},
            "files": {name: (self.path(rid) / f).is_file() for name, f in RUN_FILES.items()},
        }
