"""A seeded fuzz of `difflab sample`, `difflab eval` and `difflab train --set`: >= 200 malformed argument sets,
each must end with a non-zero exit code and one message (ours: one `error:` line; or click's usage error), never a
Python traceback. In process through typer's CliRunner, against one tiny trained run (tests/cli/conftest.py).

Each case is a few valid arguments (cheap settings: 2 steps, 8 samples) followed by one malformed fragment, which
comes last so it overrides a valid value of the same option. The 60-case random run of the issue gave 7
tracebacks and 6 silent exit-0s.
"""

import random

import pytest
from typer.testing import CliRunner

from difflab.cli.main import app

runner = CliRunner()

BAD_NUMBERS = ["0", "-1", "-7", "abc", "1e400", "nan", "", "2.5"]
SAMPLE_BAD = [
    *(["--n", v] for v in BAD_NUMBERS), *(["--steps", v] for v in BAD_NUMBERS),
    ["--seed", "abc"], ["--seed", "1.5"],
    *(["--guidance", v] for v in ["nan", "inf", "-inf", "abc"]),
    *(["--classifier-scale", v] for v in ["nan", "inf", "2"]),
    ["--sampler", "nope"], ["--sampler", ""], ["--sampler", "EULER"], ["--sampler", "[/x]"], ["--schedule", "[bold]"], ["--schedule", "nope"], ["--schedule", ""],
    ["--option", "eta"], ["--option", "=1"], ["--option", "nosuch=1"], ["--option", "order=abc"],
    ["--option", "order={}"], ["--option", "corrector=2"], ["--option", "order=[1, 2]"], ["--option", "order=1e400"],
    ["--schedule-option", "nosuch=7"], ["--schedule-option", "t_max=abc"], ["--schedule-option", "t_max=2"],
    ["--schedule-option", "t_max=nan"], ["--schedule-option", "x"],
    ["--device", "cuda"], ["--device", "cuda:3"], ["--device", "tpu"], ["--device", ""], ["--device", "mps"],
    ["--out", "{tmp}"], ["--out", "{tmp}/x.txt"], ["--out", "{tmp}/x"], ["--out", "{file}/x.png"],
    ["--save-array", "{tmp}"], ["--save-array", "{tmp}/x.txt"], ["--save-array", "{file}/x.npy"],
    ["--no-grid"], ["--no-grid", "--out", "{tmp}/a.png"],
    ["--class", "99"], ["--class", "-1"], ["--class", "abc"], ["--class", "1", "--class", "2", "--class", "3"],
    ["--prompt", "a red circle"], ["--negative", "blurry"], ["--negative", "x", "--guidance", "3"],
    ["--nosuch-flag"], ["extra-argument"], ["--threads", "0"], ["--threads", "-2"],
]
SAMPLE_RUNS = ["{run}", "{tmp}/no-run", "{file}", "{tmp}/[/x]", "~/no-such-run-[fid]"]
SAMPLE_BASE = [["--steps", "2", "--n", "8"], ["--steps", "2", "--n", "8", "--sampler", "euler", "--seed", "3"],
               ["--n", "8", "--steps", "2", "--schedule", "karras", "--class", "1"]]

TRAIN_BAD = [
    "train.lr=abc", "train.lr=-1", "train.lr=nan", "train.batch_size=0", "train.batch_size=-3", "train.lrr=1",
    "train.grad_accum=0", "train.ema=abc", "train.seed=abc", "train.mixed_precision=fp7", "train=5",
    "train.lr.x=1", "noequals", "=5", "nosection.key=1", "model.network=resnet", "model.options.hidden_dim=-1",
    "model.options.hidden_dim=abc", "model.options.dropout=.inf", "model.options.num_blocks={}",
    "model.options.channel_mult=xxxx", "model.options.nosuch=1", "model.options=[1, 2]", "model.parameterization=zz",
    "model.preconditioning=zz", "model.conditioning=text", "model.sigma_data=abc", "process.name=nope",
    "process.options.nosuch=1", "data.name=nope", "data.options.name=nope", "data.options.n=-5",
    "data.options.nosuch=1", "loss.weighting=nope", "loss.time_sampler=nope", "loss.gamma=abc", "sample.n=0",
    "sample.steps=0", "sample.steps=abc", "sample.guidance=nan", "sample.options=[1]", "sample.schedule_options=3",
    "sample.options.eta=1", "sample.options.order=abc", "sample.schedule_options.rho=7", "sample.sampler=nope",
    "sample.schedule=nope", "train.lr=1e400", "loss.mean=.nan", "model.sigma_data=0", "train.max_minutes=.inf",
]
TRAIN_BASE = [["--set", "data.options={name: 8gaussians, n: 256}", "--set", "model.options={hidden_dim: 16, num_blocks: 1}"],
              ["--set", "data.options={name: moons, n: 256}", "--set", "train.batch_size=16"]]

EVAL_BAD = [
    *(["--n", v] for v in ["0", "-1", "abc"]), *(["--steps", v] for v in ["0", "-2"]),
    ["--batch-size", "0"], ["--batch-size", "-1"], ["--n-real", "0"], ["--n-real", "-4"],
    ["--metrics", "nope"], ["--metrics", ""], ["--metrics", "sw2,nope"], ["--metrics", "fid"],
    ["--sampler", "nope"], ["--schedule", "nope"], ["--guidance", "nan"], ["--device", "cuda"], ["--device", "tpu"],
    ["--json", "{tmp}"], ["--inception", "{tmp}/none.pt"],
    ["--option", "eta"], ["--option", "nosuch=1"], ["--option", "order=abc"], ["--schedule-option", "nosuch=7"],
    ["--schedule-option", "t_max=2"], ["--schedule-option", "x"],
]
EVAL_BASE = [["--n", "8", "--steps", "2", "--metrics", "sw2"], ["--n", "8", "--steps", "2", "--n-real", "64"]]
EVAL_WITHOUT_RUN = [["--real", "{tmp}/none"], ["--fake", "{tmp}/none"], ["--real", "{tmp}/a", "--fake", "{tmp}/b"],
                    ["--real", "{file}", "--fake", "{file}"]]


def cases(seed: int = 0) -> list[tuple[str, list[str]]]:
    """(command, argument list) pairs; a seeded shuffle of the product of bases and malformed fragments."""
    rng = random.Random(seed)
    out = []
    for bad in SAMPLE_BAD:
        for base in rng.sample(SAMPLE_BASE, 2):
            out.append(("sample", ["sample", "{run}", *base, *bad]))
    for run in SAMPLE_RUNS[1:]:
        out.append(("sample", ["sample", run, *rng.choice(SAMPLE_BASE)]))
    for bad in TRAIN_BAD:
        for base in TRAIN_BASE:
            out.append(("train", ["train", rng.choice(["toy2d", "toy2d"]), "--out", "{tmp}/t", "--steps", "1", *base,
                                  "--set", bad]))
    out += [("train", ["train", "digitz", "--steps", "1"]), ("train", ["train", "{tmp}/none.yaml"]),
            ("train", ["train", "toy2d", "--steps", "0"]), ("train", ["train", "toy2d", "--minutes", "-1"]),
            ("train", ["train", "toy2d", "--minutes", "nan"]), ("train", ["train"]),
            ("train", ["train", "--out", "{tmp}/none", "--resume"]), ("train", ["train", "toy2d", "--out", "{file}"])]
    for bad in EVAL_BAD:
        for base in EVAL_BASE:
            out.append(("eval", ["eval", "{run}", *base, *bad]))
    out += [("eval", ["eval", *bad]) for bad in EVAL_WITHOUT_RUN] + [("eval", ["eval", "{tmp}/no-run", "--n", "8"])]
    rng.shuffle(out)
    return out


CASES = cases()


def test_there_are_enough_cases():
    assert len(CASES) >= 200 and {c for c, _ in CASES} == {"sample", "train", "eval"}


def failures_of(command: str, toy_run, tmp_path) -> list[str]:
    """The cases of `command` that exit 0, crash, print a traceback or print other than one message."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    failures = []
    for name, args in CASES:
        if name != command:
            continue
        args = [a.replace("{run}", str(toy_run)).replace("{tmp}", str(tmp_path)).replace("{file}", str(a_file))
                for a in args]
        r = runner.invoke(app, args)
        text = r.output
        ours, click = text.count("error: ") == 1, r.exit_code == 2 and "Usage:" in text and "error: " not in text
        crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
        left = [p.name for p in (tmp_path / "t", tmp_path / "runs") if p.exists()]  # a refusal leaves no folder
        if r.exit_code == 0 or crashed or "Traceback" in text or not (ours or click) or left:
            failures.append(f"{command} {args[1:]}: exit {r.exit_code}, "
                            f"{type(r.exception).__name__ if crashed else ''} {text[-300:]!r} left {left}")
    return failures


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("command", ["sample", "train", "eval"])
def test_malformed_arguments_get_one_message_and_a_nonzero_exit(command, toy_run, here):
    failures = failures_of(command, toy_run, here)
    assert not failures, f"{len(failures)} cases:\n" + "\n".join(failures)
