"""`difflab demo`: the main job on bundled data, writing pictures into one folder.

1. the forward process made visible with the exact mixture (marginals p_t, score fields);
2. the `digits` preset trained for a few minutes on the CPU (loss curve, preview grids);
3. samples of the trained model, scored by the digit classifier (confidence, class coverage).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from difflab.jobs.forward_pictures import write_forward_pictures
from difflab.jobs.sample import run_sample
from difflab.jobs.train import run_train


def run_demo(out: str | Path, minutes: float = 4.0, resume: bool = False) -> dict:
    """Write forward-process pictures, train digits for `minutes`, sample and score; returns the scores."""
    console = Console()
    out = Path(out)
    for p in write_forward_pictures(out):
        console.print(f"wrote {p}")
    run_dir = out / "digits-run"
    run_train("digits", run_dir, minutes=minutes, resume=resume and (run_dir / "run.json").exists())
    result = run_sample(run_dir, out=out / "samples.png", n=100, save_array_path=out / "samples.npy")
    scores = score_digits(result.x)
    console.print(f"digit classifier on 100 samples: mean confidence {scores['mean_confidence']:.3f}, "
                  f"classes covered {scores['coverage']:.0%}")
    console.print(f"pictures: {out}/samples.png, {run_dir}/loss.png, {out}/marginals_1d.png, {out}/score_field_2d.png")
    return scores


def score_digits(x) -> dict:
    """Confidence and class coverage of generated 8x8 digits under the evaluation digit classifier."""
    from difflab.metrics import class_statistics, load_digit_classifier

    clf = load_digit_classifier()
    stats = class_statistics(clf.logits(x.clamp(-1, 1)))
    return {"mean_confidence": float(stats.mean_confidence), "coverage": float(stats.coverage)}
