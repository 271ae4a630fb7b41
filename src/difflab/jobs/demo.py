"""`difflab demo`: the main job on bundled data, writing pictures into one folder.

1. the forward process made visible with the exact mixture (marginals p_t, score fields);
2. the `digits` preset trained for a few minutes on the CPU (loss curve, preview grids);
3. samples of the trained model, scored by the digit classifier (confidence, class coverage).

Run twice on one folder, the demo continues its run (`difflab train --resume`: `minutes` more of
training) rather than refusing or starting over. Every time budget is reported with the steps it
bought: on the terminal, on samples.png and in samples.json beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from difflab.jobs.forward_pictures import write_forward_pictures
from difflab.jobs.sample import run_sample
from difflab.jobs.train import run_train
from difflab.utils.files import atomic_write_json
from difflab.utils.progress import format_duration
from difflab.viz import save_image_grid

N_SAMPLES = 100


def run_demo(out: str | Path, minutes: float = 4.0, resume: bool = True, *, overrides: list[str] | None = None,
             forward_pictures: bool = True) -> dict:
    """Write forward-process pictures, train digits for `minutes` (more, when out/digits-run holds a run
    and resume is True; resume=False refuses an existing run), sample and score; returns what
    samples.json records. overrides: `--set` values for the digits preset (tests use a tiny network)."""
    console = Console(soft_wrap=True)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)  # paths print literally

    out = Path(out)
    if forward_pictures:
        for p in write_forward_pictures(out):
            say(f"wrote {p}")
    run_dir = out / "digits-run"
    trained = run_train("digits", run_dir, minutes=minutes, resume=resume, overrides=overrides)
    result = run_sample(run_dir, n=N_SAMPLES, save_array_path=out / "samples.npy")
    report = {
        **score_digits(result.x),
        "n": N_SAMPLES,
        "nfe": result.nfe,
        "steps": trained.step,
        "images_seen": trained.images_seen,
        "train_seconds": trained.elapsed,
        "minutes_budget": minutes,
        "stop_reason": trained.stop_reason,
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(out / "samples.json", report)
    save_image_grid(result.x, out / "samples.png", nrow=10, scale=8, caption=caption(report))
    say(f"digits: {trained.step} steps ({trained.images_seen:,} images) in "
        f"{format_duration(trained.elapsed)} of training (budget {minutes:g} min this call, "
        f"{report['torch_threads']} torch thread(s), stopped: {trained.stop_reason})")
    say(f"digit classifier on {N_SAMPLES} samples: mean confidence {report['mean_confidence']:.3f}, "
        f"classes covered {report['coverage']:.0%}")
    say(f"pictures: {out}/samples.png (scores in samples.json), {run_dir}/loss.png, {out}/marginals_1d.png, "
        f"{out}/score_field_2d.png")
    return report


def caption(report: dict) -> str:
    """The label written onto samples.png: the run's steps beside its time, then the classifier's scores."""
    return (f"digits, {report['steps']} steps ({report['images_seen']:,} images) in "
            f"{format_duration(report['train_seconds'])}, sampler NFE {report['nfe']}\n"
            f"digit classifier: mean confidence {report['mean_confidence']:.3f}, "
            f"classes covered {report['coverage']:.0%}")


def score_digits(x) -> dict:
    """Confidence and class coverage of generated 8x8 digits under the evaluation digit classifier."""
    from difflab.metrics import class_statistics, load_digit_classifier

    clf = load_digit_classifier()
    stats = class_statistics(clf.logits(x.clamp(-1, 1)))
    return {"mean_confidence": float(stats.mean_confidence), "coverage": float(stats.coverage)}
