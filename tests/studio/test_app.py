"""The studio's API through Starlette's test client: runs, a sample job followed by its events, Compare,
Inside, the busy refusal, cancellation, and every bad input answered by one message."""

import base64
import json
import shlex
import threading

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from starlette.testclient import TestClient
from typer.testing import CliRunner

from difflab.cli.main import app as cli
from difflab.studio.app import create_app
from difflab.studio.settings import Setting
from difflab.studio.worker import Worker
from difflab.viz.io import image_grid


@pytest.fixture()
def client(table):
    return TestClient(create_app(table))


def events(client, job):
    out = []
    with client.stream("GET", f"/api/jobs/{job}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def png(data: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(data)))


def test_runs_and_summary(client, runs_dir):
    assert [r["id"] for r in client.get("/api/runs").json()] == ["digits", "digits-cond", "toy"]
    s = client.get("/api/runs/digits").json()
    ckpt = runs_dir / "digits" / s["checkpoint"]
    with safe_open(str(ckpt / "ema.safetensors"), "pt") as f:  # the count, read from the weights file
        assert s["parameters"] == sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    assert s["data_shape"] == [1, 8, 8] and s["kind"] == "image"
    assert s["num_classes"] is None and s["text"] is False
    assert s["config"]["model"]["options"]["base_channels"] == 8
    assert client.get("/api/runs/toy").json()["kind"] == "points"
    r = client.get("/api/runs/digits/loss.png")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"


def test_sample_job_streams_progress_and_its_command_reproduces_it(client, runs_dir, tmp_path):
    job = client.post("/api/runs/digits/sample", json={"sampler": "ddim", "steps": 4, "n": 4, "seed": 3}).json()["job"]
    evs = events(client, job)
    kinds = [e["type"] for e in evs]
    assert kinds == ["progress"] * 4 + ["result", "end"]  # DDIM: one denoiser call per step
    progress = evs[:4]
    assert [e["calls"] for e in progress] == [1, 2, 3, 4]
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions) and 0 <= fractions[0] < fractions[-1] < 1
    assert progress[0]["preview"].startswith("data:image/png;base64,")  # the first x0_hat is always shown
    result = evs[4]
    assert result["nfe"] == 4 and result["wall_s"] > 0
    grid = png(client.get(result["image"]).content)
    assert grid.shape[:2] == (240, 240)  # 2 x 2 tiles of 8 + 2 pad = 20 px, x 12 to about 256 px
    # the command shown on the page draws the same samples (read back from the array it writes)
    words = shlex.split(result["command"])
    assert words[:3] == ["difflab", "sample", str((runs_dir / "digits").resolve())]
    words[words.index("--out") + 1] = str(tmp_path / "grid.png")
    r = CliRunner().invoke(cli, [*words[1:], "--save-array", str(tmp_path / "x.npy"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    import torch

    expected = image_grid(torch.from_numpy(np.load(tmp_path / "x.npy")))[:, :, 0]
    assert np.array_equal(grid[::12, ::12], expected)


def test_class_run_with_guidance_shows_the_conditional_x0_hat_and_reproduces(client, runs_dir, tmp_path):
    s = client.get("/api/runs/digits-cond").json()
    assert s["num_classes"] == 10 and s["text"] is False  # the page shows class and guidance, not prompts
    body = {"sampler": "euler", "steps": 3, "n": 2, "seed": 1, "classes": [3, 7], "guidance": 2.5}
    evs = events(client, client.post("/api/runs/digits-cond/sample", json=body).json()["job"])
    result = next(e for e in evs if e["type"] == "result")
    assert result["nfe"] == 3  # one batched call per step: [cond, uncond] in one pass
    first = png(base64.b64decode(evs[0]["preview"].split(",", 1)[1]))
    assert first.shape[:2] == (120, 240)  # n = 2 previews (1 row of 2 tiles), not the doubled batch of 4
    words = shlex.split(result["command"])
    assert words[words.index("--guidance") + 1] == "2.5"
    assert [words[i + 1] for i, w in enumerate(words) if w == "--class"] == ["3", "7"]
    words[words.index("--out") + 1] = str(tmp_path / "grid.png")
    r = CliRunner().invoke(cli, [*words[1:], "--save-array", str(tmp_path / "x.npy"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    import torch

    grid = png(client.get(result["image"]).content)
    expected = image_grid(torch.from_numpy(np.load(tmp_path / "x.npy")))[:, :, 0]
    scale = grid.shape[0] // expected.shape[0]
    assert np.array_equal(grid[::scale, ::scale], expected)
    assert np.load(tmp_path / "x.labels.npy").tolist() == [3, 7]


def test_compare_two_settings_same_seed(client):
    body = {"settings": [{"sampler": "ddim", "steps": 3, "n": 2}, {"sampler": "heun", "steps": 3, "n": 2}]}
    evs = events(client, client.post("/api/runs/digits/compare", json=body).json()["job"])
    rows = next(e for e in evs if e["type"] == "result")["rows"]
    assert [r["label"] for r in rows] == ["ddim, 3 steps, default", "heun, 3 steps, default"]
    assert rows[0]["nfe"] == 3 and rows[1]["nfe"] > 3  # Heun: two calls per step but the last
    parts = [e["part"] for e in evs if e["type"] == "progress"]
    assert parts == sorted(parts) and set(parts) == {0, 1}
    assert all(client.get(r["image"]).status_code == 200 for r in rows)


@pytest.mark.parametrize("body, words", [
    ({"steps": 0}, "steps"),
    ({"sampler": "nope"}, "nope"),
    ({"options": ["eta=abc"], "sampler": "ddim"}, "eta"),
])
def test_library_errors_reach_the_page_as_one_message(client, body, words):
    evs = events(client, client.post("/api/runs/digits/sample", json={"n": 1, **body}).json()["job"])
    assert [e["type"] for e in evs] == ["error", "end"]
    assert words in evs[0]["message"] and "Traceback" not in evs[0]["message"]


@pytest.mark.parametrize("body, words", [
    ({"nope": 1}, "unknown setting"),
    ({"steps": "many"}, "steps must be a int"),
    ({"options": ["eta"]}, "KEY=VALUE"),
    ({"n": 1000}, "difflab sample RUN --n N"),
    ({"classes": [1]}, None),  # accepted here, refused by the library: an unconditional model
])
def test_bad_settings_are_refused_before_a_job(client, body, words):
    r = client.post("/api/runs/digits/sample", json=body)
    if words is None:
        evs = events(client, r.json()["job"])
        assert "not class-conditional" in evs[0]["message"]
        return
    assert r.status_code == 400 and words in r.json()["error"]


def test_requests_that_are_not_small_json(client):
    r = client.post("/api/runs/digits/sample", content=b"steps=3", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = client.post("/api/runs/digits/sample", content=b"{" + b" " * 70000 + b"}",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "KiB" in r.json()["error"]
    r = client.post("/api/runs/digits/compare", json={"settings": [{}]})
    assert r.status_code == 400 and "2 to 4" in r.json()["error"]


@pytest.mark.parametrize("path", [
    "/api/runs/..%2F..%2Fetc%2Fpasswd", "/api/runs/digits/..%2Frun.json", "/api/runs/digits/run.json",
    "/api/runs/digits/config.yaml", "/api/runs/%2Fetc/loss.png", "/../pyproject.toml", "/static/../app.py",
    "/api/jobs/1/..%2F..%2Frun.json", "/app.py", "/api/runs/nope",
])
def test_no_path_from_the_browser_reaches_the_file_system(client, path):
    r = client.get(path)
    assert r.status_code == 404 and "serves only" in r.json()["error"]


def test_a_second_job_is_refused_while_one_runs(table, client):
    worker = client.app.state.worker
    release = threading.Event()
    job = worker.submit("sample", lambda job: release.wait(10))
    try:
        r = client.post("/api/runs/digits/sample", json={"steps": 2})
        assert r.status_code == 409 and f"job {job.id}" in r.json()["error"]
    finally:
        release.set()
        job.done.wait(10)
    assert client.post("/api/runs/digits/sample", json={"steps": 2, "n": 1}).status_code == 200


def test_a_cancelled_job_stops_at_the_next_denoiser_call(table):
    worker = Worker(table)
    s = Setting(sampler="ddim", steps=50, schedule="default", seed=0, n=1)

    def work(job):
        job.cancelled.set()  # as the SSE stream does when the page goes away
        worker.draw(job, "digits", s)

    job = worker.submit("sample", work)
    assert job.done.wait(10)
    evs = [job.events.get() for _ in range(job.events.qsize())]
    assert [e["type"] for e in evs] == ["cancelled", "end"] and "0.png" not in job.images


def test_inside_pictures(client):
    strip = png(client.get("/api/runs/digits/inside").content)
    assert strip.shape[1] == 8 * 10 * 9  # 8 frames of 8 + 2 pad px, x 9 to about 96 px each
    assert strip.shape[0] == 2 * 10 * 9  # x_t above x0_hat
    field = client.get("/api/runs/toy/inside?t=0.3")
    assert field.status_code == 200 and field.content[:4] == b"\x89PNG"
    r = client.get("/api/runs/toy/inside?t=0")
    assert r.status_code == 400 and "(0, 1]" in r.json()["error"]


def test_cli_refuses_a_folder_without_runs(tmp_path):
    r = CliRunner().invoke(cli, ["studio", str(tmp_path)])
    assert r.exit_code == 2 and "holds no difflab run" in r.output and "Traceback" not in r.output


def test_loopback_hosts():
    from difflab.cli.studio import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_a_bug_is_one_line_not_a_traceback(table, monkeypatch):
    client = TestClient(create_app(table), raise_server_exceptions=False)

    def broken(rid):
        raise RuntimeError("boom")

    monkeypatch.setattr(table, "summary", broken)
    r = client.get("/api/runs/digits")
    assert r.status_code == 500 and r.json() == {"error": "unexpected RuntimeError: boom"}


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_cli_binds_loopback_by_default_and_warns_otherwise(runs_dir, monkeypatch, host, warned):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    args = ["studio", str(runs_dir / "digits")] + ([] if host == "127.0.0.1" else ["--host", host])
    r = CliRunner().invoke(cli, [*args, "--port", "7999"])
    assert r.exit_code == 0, r.output
    assert calls == [{"host": host, "port": 7999, "log_level": "warning"}]
    assert ("warning: --host 0.0.0.0" in r.output) is warned
