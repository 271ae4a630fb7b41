"""`difflab bench samplers` on one tiny cell: what it writes, with a fitted grid's set-up counted apart."""

import json

from typer.testing import CliRunner

from difflab.cli.main import app


def test_bench_samplers_writes_rows_and_tables(tmp_path):
    out_json, out_md = tmp_path / "rows.json", tmp_path / "tables.md"
    args = ["bench", "samplers", "--process", "vp", "--mixture", "ring", "--sampler", "unipc", "--schedule", "logsnr",
            "--schedule", "optimized", "--nfe", "4", "-n", "32", "--pilot", "8", "--max-evals", "3", "--workers", "1",
            "--no-overhead", "--json", str(out_json), "--markdown", str(out_md)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["schedule"]: r for r in json.loads(out_json.read_text())}
    assert set(rows) == {"logsnr", "optimized"}
    assert rows["logsnr"]["nfe"] == rows["optimized"]["nfe"] == 4  # sampling calls of the evaluated batch
    assert rows["logsnr"]["fit_nfe"] == 0 and rows["optimized"]["fit_nfe"] > 4 * 7  # 4 starts + 3 runs + the solve
    assert rows["optimized"]["pilot"] == 8 and all(r["rmse"] > 0 and r["case"] == "ring-vp" for r in rows.values())
    md = out_md.read_text()
    assert f"(+{rows['optimized']['fit_nfe']} set-up)" in md and "| unipc | logsnr |" in md
    assert f"{rows['optimized']['fit_nfe']} x 8" in md  # the goal table states the fit beside the fitted figure
    assert "bench samplers 1/1" in result.output  # progress over cases (it was silent for minutes)


def test_bench_samplers_rejects_an_unknown_sampler():
    result = CliRunner().invoke(app, ["bench", "samplers", "--sampler", "nope", "--no-overhead", "--workers", "1"])
    assert result.exit_code == 2 and "unknown sampler 'nope'" in result.output
