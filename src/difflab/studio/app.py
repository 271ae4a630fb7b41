"""The studio's ASGI app (Starlette): a static page and a small JSON + server-sent-events API.

    GET  /                           the page (static/index.html, app.js, style.css; nothing else is served)
    GET  /api/runs                   [{id, name}] of the runs given on the command line
    GET  /api/runs/{id}              config, parameter count, shape, conditions, sample defaults
    GET  /api/runs/{id}/{loss|preview}.png   the run's loss curve and last preview
    GET  /api/samplers               sampler names with their options, grid names
    POST /api/runs/{id}/sample       {setting} -> {job}; 409 while another job runs
    POST /api/runs/{id}/compare      {settings: [2..4 settings]} -> {job}
    POST /api/runs/{id}/edit         {image, [mask], strength, method, setting} -> {job} (studio/edit.py)
    GET  /api/jobs/{job}/events      text/event-stream: progress (with the live x0_hat), result, error, end
    GET  /api/jobs/{job}/{k}.png     a result picture (download)
    GET  /api/runs/{id}/inside?t=&seed=&prompt=   the Inside tab's picture (prompt: text runs)

Every error is one JSON line {"error": message} with a 4xx status: no traceback reaches the page.
"""

from __future__ import annotations

import asyncio
import json
import queue
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from difflab.config.sampling import SCHEDULE_WORDS
from difflab.sampling import GRIDS, SAMPLERS, sampler_options
from difflab.studio.edit import MAX_UPLOAD, parse_edit
from difflab.studio.inside import score_field_png, strip_png
from difflab.studio.runs import RUN_FILES, RunTable
from difflab.studio.settings import parse_setting
from difflab.studio.worker import Busy, Worker
from difflab.utils.errors import DifflabError

MAX_BODY = 64 * 1024  # bytes of JSON a request may send
EDIT_BODY = 2 * MAX_UPLOAD * 4 // 3 + MAX_BODY  # an edit: two base64 pictures (image, mask) and its settings
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_json(request: Request, limit: int = MAX_BODY):
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise DifflabError("send the settings as JSON (Content-Type: application/json)")
    too_big = f"the request is larger than {limit // 1024} KiB"
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise DifflabError("the request's Content-Length is not a number") from None
    if declared > limit:
        raise DifflabError(too_big)
    body = b""
    async for chunk in request.stream():  # counted as it arrives: a wrong Content-Length cannot get more in
        body += chunk
        if len(body) > limit:
            raise DifflabError(too_big)
    try:
        return json.loads(body)
    except ValueError as e:
        raise DifflabError(f"the request is not valid JSON ({e})") from None


async def _event_stream(request: Request, job):
    """Server-sent events of one job until its end; a page that goes away cancels the job."""
    finished = False
    try:
        while True:
            try:
                event = job.events.get_nowait()
            except queue.Empty:
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)
                continue
            yield f"data: {json.dumps(event)}\n\n"
            if event["type"] == "end":
                finished = True
                return
    finally:
        if not finished:  # the page went away: stop the sampler at its next call
            job.cancelled.set()


def _static(name: str):
    async def page(request: Request) -> Response:
        text = resources.files("difflab.studio").joinpath("static", name).read_text()
        return Response(text, media_type=STATIC[name])
    return page


async def _on_difflab(request, exc):
    return error(str(exc), 409 if isinstance(exc, Busy) else 400)


async def _on_bug(request, exc):  # a bug, still one line for the page (the server's log keeps the rest)
    return error(f"unexpected {type(exc).__name__}: {exc}", 500)


async def _on_missing(request, exc):
    return error("not found: the studio serves only its page and the runs it was started with", 404)


class StudioAPI:
    """The API's handlers over the runs the studio was started with and its one worker."""

    def __init__(self, runs: RunTable):
        self.runs, self.worker = runs, Worker(runs)

    def run_id(self, request: Request) -> str:
        rid = request.path_params["rid"]
        if rid not in self.runs.paths:
            raise KeyError(rid)
        return rid

    def defaults(self, rid: str) -> dict:
        return self.runs.summary(rid)["defaults"]

    async def list_runs(self, request):
        return JSONResponse([{"id": rid, "name": path.name} for rid, path in self.runs.paths.items()])

    async def run_summary(self, request):
        return JSONResponse(await run_in_threadpool(self.runs.summary, self.run_id(request)))

    async def run_file(self, request):
        name = request.path_params["name"]
        if name not in RUN_FILES:
            raise KeyError(name)
        path = self.runs.file(self.run_id(request), name)
        if path is None:
            return error(f"this run has no {RUN_FILES[name]} yet", 404)
        return Response(path.read_bytes(), media_type="image/png")

    async def samplers(self, request):
        return JSONResponse({"samplers": {name: sorted(sampler_options(name)) for name in SAMPLERS},
                             "schedules": [*GRIDS, *SCHEDULE_WORDS]})

    async def start_sample(self, request):
        rid = self.run_id(request)
        setting = parse_setting(await read_json(request), self.defaults(rid))
        return JSONResponse({"job": self.worker.sample(rid, setting).id})

    async def start_compare(self, request):
        rid = self.run_id(request)
        data = await read_json(request)
        items = data.get("settings") if isinstance(data, dict) else None
        if not isinstance(items, list) or not 2 <= len(items) <= 4:
            raise DifflabError("Compare takes 2 to 4 settings")
        defaults = self.defaults(rid)
        return JSONResponse({"job": self.worker.compare(rid, [parse_setting(s, defaults) for s in items]).id})

    async def start_edit(self, request):
        rid = self.run_id(request)
        own, setting = parse_edit(await read_json(request, EDIT_BODY), self.defaults(rid))
        return JSONResponse({"job": self.worker.edit(rid, own, setting).id})

    async def events(self, request):
        job = self.worker.jobs.get(request.path_params["job"])
        if job is None:
            raise KeyError("job")
        return StreamingResponse(_event_stream(request, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def job_image(self, request):
        job = self.worker.jobs.get(request.path_params["job"])
        png = None if job is None else job.images.get(f"{request.path_params['k']}.png")
        if png is None:
            raise KeyError("image")
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="difflab-{job.id}.png"'})

    async def inside(self, request):
        rid = self.run_id(request)
        try:
            t = float(request.query_params.get("t", "0.5"))
            seed = int(request.query_params.get("seed", "0"))
        except ValueError:
            raise DifflabError("t must be a number in (0, 1] and seed a whole number") from None
        prompt = request.query_params.get("prompt") or None  # a text run's strip follows the page's prompt
        loaded = await run_in_threadpool(self.runs.load, rid)
        if len(loaded.meta.data_shape) == 3:
            png = await run_in_threadpool(strip_png, loaded, seed, prompt=prompt)
        else:
            png = await run_in_threadpool(score_field_png, loaded, t, seed)
        return Response(png, media_type="image/png")

    def routes(self) -> list[Route]:
        routes = [Route("/", _static("index.html"))]
        routes += [Route(f"/{name}", _static(name)) for name in STATIC if name != "index.html"]
        return routes + [
            Route("/api/runs", self.list_runs),
            Route("/api/samplers", self.samplers),
            Route("/api/runs/{rid}", self.run_summary),
            Route("/api/runs/{rid}/sample", self.start_sample, methods=["POST"]),
            Route("/api/runs/{rid}/compare", self.start_compare, methods=["POST"]),
            Route("/api/runs/{rid}/edit", self.start_edit, methods=["POST"]),
            Route("/api/runs/{rid}/inside", self.inside),
            Route("/api/runs/{rid}/{name}", self.run_file),
            Route("/api/jobs/{job}/events", self.events),
            Route("/api/jobs/{job}/{k:int}.png", self.job_image),
        ]


def create_app(runs: RunTable) -> Starlette:
    api = StudioAPI(runs)
    app = Starlette(routes=api.routes(), exception_handlers={
        DifflabError: _on_difflab, KeyError: _on_missing, 404: _on_missing, 405: _on_missing, Exception: _on_bug})
    app.state.worker, app.state.runs = api.worker, runs
    return app
