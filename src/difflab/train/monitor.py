"""What a run shows and leaves behind: log.jsonl, log.csv, loss.png, TensorBoard, a progress display.

Only the main process writes. Records are plain dicts with the fields of LOG_FIELDS; on resume the
records after the checkpoint's step (written by the interrupted run, about to be redone) are dropped
so the files read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

from difflab.utils.files import atomic_write, atomic_write_text
from difflab.utils.progress import Progress

FEW_POINTS = 30  # loss curves with at most this many records get a marker on every point
LOG_FIELDS = ("step", "loss", "lr", "grad_norm", "images_per_s", "images_seen", "elapsed")


def _write_csv(path: str, records: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)


def read_log(path: str | Path) -> list[dict]:
    """The records of a log.jsonl file ([] if there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_figure(steps: list[int], losses: list[float]):
    """The logged loss against the step: a log axis when the positive losses span more than a decade,
    else a linear one with plain numbers on every tick; a marker on every point when there are few (a
    three-point demo curve still reads as data); integer steps from 0 on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    few = len(steps) <= FEW_POINTS
    ax.plot(steps, losses, lw=1.5 if few else 1, marker="o" if few else None, ms=5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(steps) * 1.05 + 1)
    if min(losses) > 0 and max(losses) >= 10 * min(losses):  # more than a decade: log scale
        ax.set_yscale("log")
    else:  # within a decade a linear axis labels every tick with a plain number
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.set(xlabel="step", ylabel="loss", title=f"training loss ({len(steps)} logged points, last step {steps[-1]})")
    ax.grid(alpha=0.3, which="both")
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.12, top=0.92)
    return fig


class RunLog:
    """Appends training records to out_dir/log.jsonl and log.csv, mirrors them to TensorBoard when
    it is installed, and redraws out_dir/loss.png at most every `plot_interval` seconds (and on close).

    A redraw takes ~0.15 s on a 2-core CPU, about one percent of training time if it ran at every
    log step of the digits preset (benchmarks/train_throughput.py); once a minute it costs 0.25 %.
    resume_step: None starts fresh files; an int keeps the records up to that step.
    """

    def __init__(self, out_dir: str | Path, resume_step: int | None = None, plot_interval: float = 60.0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.csv, self.png = (self.out_dir / n for n in ("log.jsonl", "log.csv", "loss.png"))
        kept = [] if resume_step is None else [r for r in read_log(self.jsonl) if r["step"] <= resume_step]
        self.records = kept
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept))
        atomic_write(self.csv, lambda tmp: _write_csv(tmp, kept))
        self.plot_interval, self._last_plot = plot_interval, -math.inf
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional
            SummaryWriter = None
        if SummaryWriter is not None:
            self.tb = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=resume_step)

    def log(self, record: dict) -> None:
        """Append one record (keys LOG_FIELDS)."""
        self.records.append(record)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore").writerow(record)
        if self.tb is not None:
            for k in LOG_FIELDS[1:]:
                if record.get(k) is not None:
                    self.tb.add_scalar(f"train/{k}", record[k], record["step"])
        if time.monotonic() - self._last_plot >= self.plot_interval:
            self.plot()

    def plot(self) -> None:
        """Redraw loss.png (see loss_figure)."""
        import matplotlib.pyplot as plt

        self._last_plot = time.monotonic()
        if not self.records:
            return
        fig = loss_figure([r["step"] for r in self.records], [r["loss"] for r in self.records])
        try:
            atomic_write(self.png, fig.savefig)
        finally:
            plt.close(fig)

    def close(self) -> None:
        self.plot()
        if self.tb is not None:
            self.tb.close()


class ProgressBar:
    """Training progress over optimizer steps (difflab.utils.progress.Progress): loss, images/s, a true
    rate and an ETA that is the sooner of the steps left and the time budget left (--minutes).

    A rich bar on a terminal, a plain line every ~10 s or ~10 % when stdout is a pipe or a file;
    disabled (every method a no-op) off the main process. deadline_s: seconds of budget left now.
    """

    def __init__(self, total: int, start: int, enabled: bool = True, *, deadline_s: float | None = None,
                 stream=None, clock=time.monotonic):
        self.progress = Progress(total, "train", "step", enabled=enabled, stream=stream,
                                 deadline_s=deadline_s, start=start, clock=clock)

    def update(self, step: int, loss: float | None = None, images_per_s: float | None = None) -> None:
        fields = {}
        if loss is not None:
            fields["loss"] = float(loss)
        if images_per_s is not None:
            fields["img/s"] = f"{images_per_s:.1f}"
        self.progress.advance(step - self.progress.completed, **fields)

    def close(self) -> None:
        self.progress.close()
