"""difflab studio in the system's headless Chromium: time from clicking Generate to the first live x0_hat
and to the final grid, and screenshots of each tab (docs/figures/studio_*.png).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studio_page.py /work/runs/digits --repeats 5 \
        [--inside-run RUN2D] [--shots docs/figures]   # screenshots: runs, sample, compare, inside, edit

The clock is the page's own (performance.now()): from the click to the moment the live <img> gets its first
preview, and to the moment the result <img> has loaded. Settings are the page's defaults for the run
(its sampler, steps and schedule; n = min(sample.n, 16)). Needs the studio extra, playwright and
/usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from pathlib import Path

import torch
import uvicorn
from playwright.sync_api import sync_playwright

from difflab.studio.app import create_app
from difflab.studio.runs import RunTable

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# watch the two images from the click on; resolves with the two times in ms
TIMED_GENERATE = """() => new Promise((resolve) => {
  const live = document.querySelector('#live'), result = document.querySelector('#result');
  live.removeAttribute('src'); const before = result.src; let first = null;
  const t0 = performance.now();
  new MutationObserver(() => { if (first === null && live.src) first = performance.now() - t0; })
    .observe(live, {attributes: true, attributeFilter: ['src']});
  const poll = () => (result.src !== before && result.complete && result.naturalWidth > 0)
    ? resolve({first_preview_ms: first, final_grid_ms: performance.now() - t0}) : setTimeout(poll, 5);
  document.querySelector('#generate').click(); poll(); })"""


def serve(table: RunTable) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(table), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    return srv, thread, f"http://127.0.0.1:{port}/"


def shoot_edit(page, shots: Path) -> None:
    """The Edit tab inpainting the top half of a real 8x8 digit (sklearn's digits, the run's data)."""
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digit = (load_digits().images[0] * (255 / 16)).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, format="PNG")
    page.click("nav button[data-tab=edit]")
    page.set_input_files("#edit-file", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_function("document.querySelector('#edit-mask').width === 8")
    box = page.locator("#edit-mask").bounding_box()
    for y in (16, 48, 80, 112):
        page.mouse.move(box["x"] + 4, box["y"] + y)
        page.mouse.down()
        page.mouse.move(box["x"] + 252, box["y"] + y, steps=12)
        page.mouse.up()
    page.click("#edit-run")
    page.wait_for_function("document.querySelector('#edit-result').complete && "
                           "document.querySelector('#edit-result').naturalWidth > 0", timeout=120000)
    page.screenshot(path=str(shots / "studio_edit.png"), full_page=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inside-run", type=Path, help="a 2-D run for the Inside screenshot's score field")
    ap.add_argument("--shots", type=Path, help="folder for studio_<tab>.png screenshots")
    args = ap.parse_args()
    runs = [args.run] + ([args.inside_run] if args.inside_run else [])
    srv, thread, url = serve(RunTable(runs))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url)
        page.wait_for_function("document.body.dataset.state === 'idle'")
        if args.shots:
            args.shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.shots / "studio_runs.png"))
        page.click("nav button[data-tab=sample]")
        settings = page.evaluate("() => { const f = document.querySelector('#sample-form'); return "
                                 "[f.sampler.value, f.steps.value, f.schedule.value, f.n.value].join(' '); }")
        times = [page.evaluate(TIMED_GENERATE) for _ in range(args.repeats)]
        print(f"{args.run} (sampler, steps, schedule, n = {settings}); torch threads {torch.get_num_threads()}")
        for key in ("first_preview_ms", "final_grid_ms"):
            values = [t[key] for t in times]
            print(f"  {key}: median {statistics.median(values):.0f} ms, min {min(values):.0f}, max {max(values):.0f} "
                  f"({len(values)} clicks)")
        print("  " + page.inner_text("#result-caption"))
        if args.shots:
            page.screenshot(path=str(args.shots / "studio_sample.png"), full_page=True)
            page.click("nav button[data-tab=compare]")
            page.fill("#compare-settings", "ddim 5\nunipc 5\ndpmpp_2m 10\nheun 10")
            page.click("#compare")
            page.wait_for_function("document.querySelectorAll('.compare-image').length === 4 && [...document"
                                   ".querySelectorAll('.compare-image')].every(i => i.complete && i.naturalWidth)",
                                   timeout=120000)
            page.screenshot(path=str(args.shots / "studio_compare.png"), full_page=True)
            page.click("nav button[data-tab=inside]")
            page.wait_for_function("document.querySelector('#inside-img').dataset.ready", timeout=60000)
            page.screenshot(path=str(args.shots / "studio_inside_images.png"), full_page=True)
            shoot_edit(page, args.shots)
            if args.inside_run:
                rid = RunTable([args.inside_run]).paths.popitem()[0]
                page.click("nav button[data-tab=inside]")
                page.select_option("#run", rid)
                page.wait_for_function(f"document.querySelector('#run-name').textContent === {rid!r}")
                page.fill("#inside-t", "0.3")
                page.dispatch_event("#inside-t", "change")
                page.wait_for_function(f"document.querySelector('#inside-img').dataset.ready === '{rid}:0.3'",
                                       timeout=60000)
                page.screenshot(path=str(args.shots / "studio_inside_2d.png"), full_page=True)
        browser.close()
    srv.should_exit = True
    thread.join(10)


if __name__ == "__main__":
    main()
