"""The Edit tab's API: SDEdit and inpainting of an uploaded picture through difflab.jobs.edit, the command
line that redraws the same grid, and uploads refused by size, type and pixels."""

import base64
import io
import json
import shlex

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from difflab.cli.main import app as cli
from difflab.studio.app import create_app
from difflab.studio.edit import MAX_UPLOAD


@pytest.fixture()
def client(table):
    return TestClient(create_app(table))


def picture(size=(8, 8), fmt="PNG", mode="L", bar=True) -> bytes:
    a = np.zeros(size[::-1], np.uint8)
    if bar:
        a[:, size[0] // 2 - 1: size[0] // 2 + 1] = 255  # a "1"
    buf = io.BytesIO()
    Image.fromarray(a).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def url(raw: bytes, kind="image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(raw).decode()


def follow(client, job):
    with client.stream("GET", f"/api/jobs/{job}/events") as r:
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("masked", [False, True])
def test_edit_and_inpaint_match_their_command_line(client, tmp_path, masked):
    body = {"image": url(picture()), "strength": 0.6, "n": 2, "sampler": "ddim", "steps": 4, "seed": 5}
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255  # regenerate the top half
    if masked:
        buf = io.BytesIO()
        Image.fromarray(mask).save(buf, format="PNG")
        body["mask"] = url(buf.getvalue())
    evs = follow(client, client.post("/api/runs/digits/edit", json=body).json()["job"])
    result = next(e for e in evs if e["type"] == "result")
    page_png = client.get(result["image"]).content
    words = shlex.split(result["command"])
    assert words[1] == ("inpaint" if masked else "edit")
    (tmp_path / "in.png").write_bytes(picture())
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for flag, name in (("--image", "in.png"), ("--mask", "mask.png"), ("--out", "edits.png")):
        if flag in words:
            words[words.index(flag) + 1] = str(tmp_path / name)
    r = CliRunner().invoke(cli, [*words[1:], "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(page_png))), np.asarray(Image.open(tmp_path / "edits.png")))


@pytest.mark.parametrize("image, words", [
    ("in.png", "a base64 data URL"),
    ("data:image/png;base64,@@@", "not valid base64"),
    (url(b"GIF89a" + b"\0" * 20, "image/png"), "not a PNG or JPEG"),
    (url(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), "not a readable picture"),
    (url(picture((1100, 4), bar=False)), "at most 1024 per side"),
    (url(b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_UPLOAD + 1)), "larger than 512 KiB"),
])
def test_uploads_refused_by_type_size_and_pixels(client, image, words):
    r = client.post("/api/runs/digits/edit", json={"image": image, "strength": 0.5})
    assert r.status_code == 400 and words in r.json()["error"]


def test_jpeg_accepted_and_library_messages_pass_through(client):
    r = client.post("/api/runs/digits/edit", json={"image": url(picture(fmt="JPEG"), "image/jpeg"),
                                                  "strength": 1.5, "n": 1, "steps": 2})
    evs = follow(client, r.json()["job"])
    assert evs[-2]["type"] == "error" and "strength" in evs[-2]["message"]
    wrong = url(picture((16, 16)))  # a mask of another size than the picture
    evs = follow(client, client.post("/api/runs/digits/edit", json={"image": url(picture()), "mask": wrong,
                                                                     "n": 1, "steps": 2}).json()["job"])
    assert evs[-2]["type"] == "error" and "draw the mask on the image's own canvas" in evs[-2]["message"]
