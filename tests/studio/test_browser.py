"""The studio in a real browser: the system's headless Chromium driven by Playwright (nothing downloaded).

The server runs in a thread on a free loopback port, over the tiny runs of conftest.py. The page is used
as a person would: pick a sampler, set steps, Generate, wait for the progress, read the result image; a
Compare; an invalid setting; closing the page mid-job.
"""

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip("no system chromium at /usr/bin/chromium (apt-get install chromium chromium-driver; .ci/run "
                "does it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
uvicorn = pytest.importorskip("uvicorn", reason="the studio extra is not installed")

from difflab.studio.app import create_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# the pixels of an <img>: size, and the spread of its grey levels (0 for a blank picture)
IMAGE_STATS = """(sel) => { const img = document.querySelector(sel);
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0;
  for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
  return {w: c.width, h: c.height, spread: hi - lo}; }"""


@pytest.fixture(scope="module")
def server(table):
    app = create_app(table)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the studio server did not start"
        time.sleep(0.05)
    yield app, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    assert shutil.which("chromium") or CHROMIUM.is_file()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server[1] + "/")
    page.wait_for_function("document.body.dataset.state === 'idle'")
    yield page
    page.close()


def test_generate_then_compare(page, tmp_path):
    page.click("nav button[data-tab=sample]")
    page.select_option("#sample-form select[name=sampler]", "ddim")
    page.fill("#sample-form input[name=steps]", "4")
    page.fill("#sample-form input[name=n]", "4")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#result').complete && "
                           "document.querySelector('#result').naturalWidth > 0", timeout=30000)
    assert page.eval_on_selector("#progress", "p => p.value") == 1
    assert page.eval_on_selector("#live", "i => i.src").startswith("data:image/png")
    stats = page.evaluate(IMAGE_STATS, "#result")
    assert (stats["w"], stats["h"]) == (240, 240) and stats["spread"] > 20  # 2 x 2 digits, not blank
    assert "4 denoiser calls" in page.inner_text("#result-caption")
    assert page.inner_text("#command").startswith("difflab sample ")
    assert page.is_hidden("#message")
    page.screenshot(path=str(tmp_path / "sample.png"), full_page=True)

    page.click("nav button[data-tab=compare]")
    page.fill("#compare-settings", "ddim 3\neuler 3")
    page.click("#compare")
    page.wait_for_function("document.querySelectorAll('.compare-image').length === 2 && "
                           "[...document.querySelectorAll('.compare-image')].every(i => i.complete && "
                           "i.naturalWidth > 0)", timeout=30000)
    captions = page.locator("#compare-results figcaption").all_inner_texts()
    assert captions[0].startswith("ddim, 3 steps") and "NFE 3" in captions[0]
    assert captions[1].startswith("euler, 3 steps") and "NFE 3" in captions[1]
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert (tmp_path / "compare.png").stat().st_size > 1000


def test_an_invalid_setting_shows_one_message(page):
    page.click("nav button[data-tab=sample]")
    page.fill("#sample-form input[name=steps]", "0")
    page.click("#generate")
    page.wait_for_selector("#message:not([hidden])", timeout=30000)
    text = page.inner_text("#message")
    assert "steps" in text and "Traceback" not in text and "File \"" not in text
    page.fill("#sample-form input[name=steps]", "2")
    page.fill("#sample-form input[name=options]", "eta")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#message').textContent.includes('KEY=VALUE')")


def test_closing_the_page_cancels_its_job(browser, server):
    app, url = server
    page = browser.new_page()
    page.goto(url + "/")
    page.wait_for_function("document.body.dataset.state === 'idle'")
    page.click("nav button[data-tab=sample]")
    page.select_option("#sample-form select[name=sampler]", "euler")
    page.fill("#sample-form input[name=steps]", "5000")  # a few seconds at least on the tiny digits net
    page.fill("#sample-form input[name=n]", "1")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress-text').textContent.startsWith('call')")
    job = app.state.worker.current
    page.close()
    assert job.done.wait(20), "the job kept running after its page closed"
    assert job.cancelled.is_set() and "0.png" not in job.images


def test_inside_tab_draws(page):
    page.click("nav button[data-tab=inside]")
    page.wait_for_function("document.querySelector('#inside-img').dataset.ready === 'digits:0.5'", timeout=30000)
    page.select_option("#run", "toy")
    page.wait_for_function("document.querySelector('#run-name').textContent === 'toy'")
    page.fill("#inside-t", "0.3")
    page.dispatch_event("#inside-t", "change")
    page.wait_for_function("document.querySelector('#inside-img').dataset.ready === 'toy:0.3'", timeout=30000)
    assert page.evaluate(IMAGE_STATS, "#inside-img")["spread"] > 50  # arrows and points, not a blank figure


def test_edit_tab_inpaints_where_the_mask_is_painted(page, tmp_path):
    import base64
    import io

    import numpy as np
    from PIL import Image

    a = np.zeros((8, 8), np.uint8)
    a[:, 3:5] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    page.click("nav button[data-tab=sample]")
    page.fill("#sample-form input[name=steps]", "3")  # the Edit tab takes the Sample tab's sampler settings
    page.click("nav button[data-tab=edit]")
    page.set_input_files("#edit-file", files=[{"name": "one.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_function("document.querySelector('#edit-mask').width === 8")
    box = page.locator("#edit-mask").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 40, steps=8)
    page.mouse.up()
    mask = page.evaluate("() => maskURL()")
    m = np.asarray(Image.open(io.BytesIO(base64.b64decode(mask.split(",", 1)[1]))).convert("L"))
    assert m.shape == (8, 8) and m[:2].max() == 255 and m[6:].max() == 0  # painted the top rows only
    page.click("#edit-run")
    page.wait_for_function("document.querySelector('#edit-result').complete && "
                           "document.querySelector('#edit-result').naturalWidth > 0", timeout=30000)
    assert page.inner_text("#edit-command").startswith("difflab inpaint ")
    assert page.is_hidden("#message")
    page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
