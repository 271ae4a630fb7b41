"""The Edit tab: SDEdit of an uploaded picture at a chosen strength, or inpainting where a mask drawn on a
canvas is white; both through difflab.jobs.edit (run_edit, run_inpaint), which read the files the way the
training images were read.

Uploads arrive as data URLs in the JSON body; they are limited in size (MAX_UPLOAD bytes decoded), type
(PNG or JPEG by their first bytes, not by what the browser claims) and pixels (MAX_PIXELS per side), and
are written only into a temporary folder of the server's choosing.
"""

from __future__ import annotations

import base64
import binascii
import io
import shlex
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from difflab.jobs.edit import run_edit, run_inpaint
from difflab.studio.settings import Setting, parse_setting
from difflab.utils.errors import DifflabError

MAX_UPLOAD = 512 * 1024  # bytes of one decoded picture
MAX_PIXELS = 1024  # per side
SIGNATURES = {b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg"}
EDIT_FIELDS = ("image", "mask", "strength", "method")


def read_upload(data_url, what: str) -> tuple[bytes, str]:
    """(bytes, suffix) of a PNG/JPEG data URL; one DifflabError naming `what` and the fix otherwise."""
    if not isinstance(data_url, str) or not data_url.startswith("data:") or ";base64," not in data_url:
        raise DifflabError(f"the {what} must be a picture chosen on the page (a base64 data URL)")
    if len(data_url) > MAX_UPLOAD * 4 // 3 + 100:
        raise DifflabError(f"the {what} is larger than {MAX_UPLOAD // 1024} KiB: use a smaller picture")
    try:
        raw = base64.b64decode(data_url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise DifflabError(f"the {what} is not valid base64") from None
    if len(raw) > MAX_UPLOAD:
        raise DifflabError(f"the {what} is larger than {MAX_UPLOAD // 1024} KiB: use a smaller picture")
    suffix = next((s for sig, s in SIGNATURES.items() if raw.startswith(sig)), None)
    if suffix is None:
        raise DifflabError(f"the {what} is not a PNG or JPEG picture")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError) as e:
        raise DifflabError(f"the {what} is not a readable picture ({e})") from None
    if max(w, h) > MAX_PIXELS:
        raise DifflabError(f"the {what} is {w}x{h} pixels; at most {MAX_PIXELS} per side")
    return raw, suffix


def parse_edit(data, defaults: dict) -> tuple[dict, Setting]:
    """(the edit's own fields, checked; the sampler setting) from the page's JSON object."""
    if not isinstance(data, dict):
        raise DifflabError("an edit must be a JSON object with an image and a strength")
    own = {k: data.get(k) for k in EDIT_FIELDS}
    setting = parse_setting({k: v for k, v in data.items() if k not in EDIT_FIELDS}, {**defaults, "n": 4})
    own["image"] = read_upload(own["image"], "image")
    own["mask"] = None if own["mask"] in (None, "") else read_upload(own["mask"], "mask")
    strength = own["strength"] if own["strength"] is not None else 0.5
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise DifflabError(f"the strength must be a number in [0, 1]; got {strength!r}")
    own["strength"], own["method"] = float(strength), own["method"] or "replace"
    return own, setting


def edit_command(run: Path, own: dict, s: Setting) -> str:
    words = ["difflab", "inpaint" if own["mask"] else "edit", str(run), "--image", "in" + own["image"][1]]
    words += ["--mask", "mask.png", "--method", own["method"]] if own["mask"] else ["--strength", f"{own['strength']:g}"]
    words += ["--n", str(s.n), "--sampler", s.sampler, "--steps", str(s.steps), "--schedule", s.schedule,
              "--seed", str(s.seed)]
    for o in s.options:
        words += ["--option", o]
    return shlex.join([*words, "--out", "edits.png"])


def run_page_edit(run: Path, own: dict, s: Setting, device: str) -> bytes:
    """The grid PNG of the edit (the input first; for inpainting also its kept part), via difflab.jobs.edit."""
    k = s.generate_kwargs()
    common = dict(n=s.n, sampler=s.sampler, steps=s.steps, schedule=s.schedule, seed=s.seed, labels=s.classes,
                  prompt=s.prompt, negative=s.negative, guidance=s.guidance, device=device, options=k["options"])
    with tempfile.TemporaryDirectory(prefix="difflab-studio-") as tmp:
        image = Path(tmp) / ("in" + own["image"][1])
        image.write_bytes(own["image"][0])
        out = Path(tmp) / "edits.png"
        if own["mask"] is None:
            run_edit(run, image=image, out=out, strength=own["strength"], **common)
        else:
            mask = Path(tmp) / ("mask" + own["mask"][1])
            mask.write_bytes(own["mask"][0])
            run_inpaint(run, image=image, mask=mask, out=out, method=own["method"], **common)
        return out.read_bytes()
