"""difflab studio: a local web page over the jobs layer (`difflab studio RUN ...`).

Thin front end, beside the CLI: it parses what the page sends, calls difflab.jobs (load_run, generate)
and difflab.viz, and shows the answers. No sampling logic lives here. Needs the `studio` extra
(starlette, uvicorn): `pip install 'difflab[studio]'`. docs/studio.md describes the page.
"""
