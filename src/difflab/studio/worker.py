"""Jobs of the studio: one worker thread runs one job at a time; the page follows it by server-sent events.

A second job while one runs is refused with a message (never interleaved). A job's events (progress with
the live x0_hat, a result, an error) go to a queue the SSE stream reads; when the page goes away the
stream cancels the job, which stops at the sampler's next denoiser call (watch.Cancelled).
Sampling is generate()'s (difflab.jobs.generate); this file only schedules and reports it.
"""

from __future__ import annotations

import base64
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from difflab.jobs.fit_schedule import resolve_schedule
from difflab.jobs.generate import generate
from difflab.studio.edit import edit_command, run_page_edit
from difflab.studio.pictures import samples_png
from difflab.studio.runs import RunTable
from difflab.studio.settings import Setting
from difflab.studio.watch import Cancelled, Watched
from difflab.utils.errors import DifflabError

PREVIEW_EVERY_S = 0.25  # the live x0_hat is drawn at most this often (the first call is always shown)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@dataclass
class Job:
    id: str
    kind: str  # "sample" or "compare"
    events: queue.Queue = field(default_factory=queue.Queue)
    images: dict[str, bytes] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def emit(self, **event) -> None:
        self.events.put(event)


class Busy(DifflabError):
    """A job is running; the page shows this message."""


class Worker:
    """Runs one job at a time in a daemon thread; keeps the last few jobs' images for download."""

    def __init__(self, runs: RunTable, keep: int = 8):
        self.runs, self.keep = runs, keep
        self.jobs: dict[str, Job] = {}
        self.current: Job | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, kind: str, work: Callable[[Job], None]) -> Job:
        with self._lock:
            if self.current is not None and not self.current.done.is_set():
                raise Busy(f"job {self.current.id} ({self.current.kind}) is still running: wait for it to finish, "
                           "or close its page to cancel it")
            job = Job(str(next(self._ids)), kind)
            self.current = job
            self.jobs[job.id] = job
            for old in list(self.jobs)[: -self.keep]:
                del self.jobs[old]
        threading.Thread(target=self._run, args=(job, work), daemon=True, name=f"studio-job-{job.id}").start()
        return job

    def _run(self, job: Job, work) -> None:
        try:
            work(job)
        except Cancelled:
            job.emit(type="cancelled", message="cancelled: the page went away")
        except DifflabError as e:
            job.emit(type="error", message=str(e))
        except Exception as e:  # a bug: still one line on the page, never a traceback
            job.emit(type="error", message=f"unexpected {type(e).__name__}: {e}")
        finally:
            job.done.set()
            job.emit(type="end")

    # ---- the two kinds of job ------------------------------------------------------------------------

    def draw(self, job: Job, rid: str, s: Setting, part: int = 0, parts: int = 1) -> dict:
        """One setting through generate(), reporting every denoiser call; the result's picture is stored
        as job.images[f"{part}.png"]."""
        loaded = self.runs.load(rid)
        last = [0.0]

        def hook(calls: int, t: float, x0_hat) -> None:
            if job.cancelled.is_set():
                raise Cancelled
            now = time.monotonic()
            event = {"type": "progress", "part": part, "parts": parts, "calls": calls, "t": t,
                     "fraction": (part + min(1.0, max(0.0, 1.0 - t))) / parts}
            if calls == 1 or now - last[0] >= PREVIEW_EVERY_S:
                last[0] = now
                event["preview"] = data_url(samples_png(loaded.to_images(x0_hat), "x0_hat"))
            job.emit(**event)

        kwargs = s.generate_kwargs()
        kwargs["schedule"] = resolve_schedule(self.runs.path(rid), s.schedule, s.sampler, s.steps)
        t0 = time.perf_counter()
        result = generate(Watched(loaded.model, s.n, hook), loaded.meta, s.n, text_encoder=loaded.text_encoder,
                          device=self.runs.device, **kwargs)
        wall = time.perf_counter() - t0
        job.images[f"{part}.png"] = samples_png(loaded.to_images(result.x), s.label())  # a latent run: decoded
        return {"label": s.label(), "nfe": result.nfe, "wall_s": round(wall, 3),
                "image": f"/api/jobs/{job.id}/{part}.png", "command": s.command(self.runs.path(rid))}

    def sample(self, rid: str, s: Setting) -> Job:
        return self.submit("sample", lambda job: job.emit(type="result", **self.draw(job, rid, s)))

    def edit(self, rid: str, own: dict, s: Setting) -> Job:
        """SDEdit or inpainting of an uploaded picture (studio/edit.py); no live preview: the editing jobs
        take no per-call hook."""
        def work(job: Job) -> None:
            job.emit(type="progress", part=0, parts=1, calls=0, t=1.0, fraction=0.0)
            t0 = time.perf_counter()
            job.images["0.png"] = run_page_edit(self.runs.path(rid), own, s, self.runs.device)
            job.emit(type="result", label=("inpaint, " + own["method"]) if own["mask"] else f"SDEdit, strength "
                     f"{own['strength']:g}", nfe=None, wall_s=round(time.perf_counter() - t0, 3),
                     image=f"/api/jobs/{job.id}/0.png", command=edit_command(self.runs.path(rid), own, s))

        return self.submit("edit", work)

    def compare(self, rid: str, settings: list[Setting]) -> Job:
        def work(job: Job) -> None:
            rows = [self.draw(job, rid, s, i, len(settings)) for i, s in enumerate(settings)]
            job.emit(type="result", rows=rows)

        return self.submit("compare", work)
