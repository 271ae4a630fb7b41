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
    preview = next(e["preview"] for e in events if "preview" in e)
    assert size(base64.b64decode(preview.split(",", 1)[1])) == picture  # the live x0_hat preview is decoded too
