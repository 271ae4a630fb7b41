"""The studio shows a latent run's samples and live x0_hat previews as decoded pictures, not latents."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install 'difflab[studio]'")

from difflab.studio.pictures import samples_png  # noqa: E402
from difflab.studio.runs import RunTable  # noqa: E402
from difflab.studio.settings import Setting  # noqa: E402
from difflab.studio.worker import Worker  # noqa: E402


def size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_studio_draws_decoded_pictures_of_a_latent_run(latent_run):
    run, _ = latent_run
    table = RunTable([run.parent])
    loaded = table.load(run.name)
    c, h, w = loaded.image_shape
    assert (h, w) != tuple(loaded.meta.data_shape[1:])  # the latents are smaller than the pictures
    worker = Worker(table)
    s = Setting(sampler="ddim", steps=2, schedule="default", seed=0, n=1, prompt="a red circle")
    job = worker.submit("sample", lambda job: job.emit(type="result", **worker.draw(job, run.name, s)))
    assert job.done.wait(60)
    events = [job.events.get() for _ in range(job.events.qsize())]
    assert events[-2]["type"] == "result", events
    picture = size(samples_png(torch.zeros(1, c, h, w)))  # the page's picture of one image of the run's size
    assert picture != size(samples_png(torch.zeros(1, 3, *loaded.meta.data_shape[1:])))
    assert size(job.images["0.png"]) == picture
    assert Image.open(io.BytesIO(job.images["0.png"])).mode == "RGB"  # not the 4-channel latents (RGBA)
    preview = next(e["preview"] for e in events if "preview" in e)
    assert size(base64.b64decode(preview.split(",", 1)[1])) == picture  # the live x0_hat preview is decoded too


def test_inside_strip_of_a_latent_run_shows_decoded_x_t_and_x0_hat(latent_run):
    from difflab.studio.inside import strip_png

    run, _ = latent_run
    loaded = RunTable([run.parent]).load(run.name)
    picture = Image.open(io.BytesIO(strip_png(loaded, steps=4, frames=4, prompt="a red circle")))
    frames = 4
    width, height = picture.size
    _, h, w = loaded.image_shape
    assert abs(height / width - 2 * h / (frames * w)) < 0.1  # two rows of `frames` pictures of the image size
    assert picture.mode == "RGB" and loaded.meta.data_shape[0] == 4  # decoded RGB, not the 4-channel latents
