"""The dashboard's web application (Starlette): its pages, its JSON and its live streams.

Every route is behind the token (`access.TokenGate`). Pages are static HTML that fetch the JSON
and open the event streams; charts are Vega-Lite specifications drawn in the browser.

    /                                   the lab: experiments, nodes, running tasks
    /experiments/NAME                   an experiment: tasks, failures, summary, charts
    /experiments/NAME/tasks/ID          a task's output, followed live
    /api/status[/events]?experiment=    patas status as JSON (or server-sent events)
    /api/experiments/NAME/tasks         the table of tasks
    /api/experiments/NAME/results       the parsed table's metrics and parameters
    /api/experiments/NAME/summary       patas summary's rows for ?metric=
    /api/experiments/NAME/chart         a chart: ?kind=&metric=&x=&y=
    /api/experiments/NAME/tasks/ID/output   the task's output (?stream=stderr), server-sent events
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from patas.analysis.status import lab_status, status_to_json
from patas.common.lab import experiments_in
from patas.common.errors import PatasError
from patas.common.lab import STREAMS, ExperimentLab
from patas.dashboard.access import TokenGate
from patas.dashboard.charts import ChartKind, chart
from patas.dashboard.live import output_events, status_events
from patas.dashboard.results import ChartError, ResultsCache, summary_rows
from patas.dashboard.task_table import task_table

STATIC = Path(__file__).with_name("static")
NO_STORE = {"cache-control": "no-store"}
EVENT_HEADERS = {**NO_STORE, "x-accel-buffering": "no"}


class Dashboard:
    """The routes of one lab's dashboard."""

    def __init__(self, lab_root: Path) -> None:
        self.lab_root = lab_root
        self.results = ResultsCache(lab_root)

    def routes(self) -> list[Any]:
        return [
            Route("/", self.page("lab.html")),
            Route("/experiments/{name}", self.page("experiment.html")),
            Route("/experiments/{name}/tasks/{task_id:int}", self.page("task.html")),
            Route("/api/status", self.status),
            Route("/api/status/events", self.status_stream),
            Route("/api/experiments/{name}/tasks", self.tasks),
            Route("/api/experiments/{name}/results", self.results_info),
            Route("/api/experiments/{name}/summary", self.summary),
            Route("/api/experiments/{name}/chart", self.chart),
            Route("/api/experiments/{name}/tasks/{task_id:int}/output", self.output),
            Mount("/static", StaticFiles(directory=STATIC)),
            Route("/favicon.ico", lambda request: Response(status_code=204)),  # none: the browser asks anyway
        ]

    def page(self, file: str) -> Any:
        async def serve(request: Request) -> Response:
            if "name" in request.path_params:
                self.experiment(request)
            return FileResponse(STATIC / file, headers=NO_STORE)

        return serve

    def experiment(self, request: Request) -> str:
        """The experiment the URL names; 404 unless it is one of the lab's folders."""
        name = str(request.path_params["name"])
        # Only names the lab's listing holds: never `..` or another path the URL might smuggle.
        if name not in experiments_in(self.lab_root):
            raise HTTPException(404, f"{self.lab_root / name}: no such experiment")
        return name

    def _experiment_param(self, request: Request) -> str | None:
        given = request.query_params.get("experiment")
        if given is None:
            return None
        if given not in experiments_in(self.lab_root):
            raise HTTPException(404, f"{self.lab_root / given}: no such experiment")
        return given

    async def status(self, request: Request) -> Response:
        experiment = self._experiment_param(request)
        status = await asyncio.to_thread(lambda: status_to_json(lab_status(self.lab_root, experiment)))
        return JSONResponse(status, headers=NO_STORE)

    async def status_stream(self, request: Request) -> Response:
        experiment = self._experiment_param(request)
        return StreamingResponse(status_events(self.lab_root, experiment), media_type="text/event-stream", headers=EVENT_HEADERS)

    async def tasks(self, request: Request) -> Response:
        name = self.experiment(request)

        def table() -> dict[str, Any]:
            status = lab_status(self.lab_root, name).experiments[0]
            return task_table(ExperimentLab(self.lab_root, name), status, self.results.get(name))

        return JSONResponse(await asyncio.to_thread(table), headers=NO_STORE)

    async def results_info(self, request: Request) -> Response:
        name = self.experiment(request)
        results = await asyncio.to_thread(self.results.get, name)
        objective = results.objective
        return JSONResponse({
            "source": results.source, "rows": len(results.frame), "metrics": results.metrics, "note": results.note,
            "parameters": results.parameters,
            "objective": None if objective is None else {"column": objective.column, "maximize": objective.maximize},
        }, headers=NO_STORE)  # fmt: skip

    async def summary(self, request: Request) -> Response:
        name = self.experiment(request)
        metric, maximize = request.query_params.get("metric", ""), _maximize(request)
        results = await asyncio.to_thread(self.results.get, name)
        rows = await asyncio.to_thread(summary_rows, results, metric, maximize)
        return JSONResponse({"rows": rows}, headers=NO_STORE)

    async def chart(self, request: Request) -> Response:
        name = self.experiment(request)
        query = request.query_params
        try:
            kind = ChartKind(query.get("kind", ChartKind.LINES.value))
        except ValueError:
            raise ChartError(f"no chart {query.get('kind')!r} (kinds: {', '.join(k.value for k in ChartKind)})") from None
        results = await asyncio.to_thread(self.results.get, name)
        spec = await asyncio.to_thread(chart, results, kind, query.get("metric", ""), query.get("x"), query.get("y") or None, _maximize(request))
        return JSONResponse(spec, headers=NO_STORE)

    async def output(self, request: Request) -> Response:
        name = self.experiment(request)
        stream = request.query_params.get("stream", "stdout")
        if stream not in STREAMS:
            raise HTTPException(400, f"stream={stream}: give stdout or stderr")
        events = output_events(self.lab_root, name, int(request.path_params["task_id"]), stream)
        return StreamingResponse(events, media_type="text/event-stream", headers=EVENT_HEADERS)


def _maximize(request: Request) -> bool | None:
    given = request.query_params.get("maximize")
    return None if given in (None, "") else given not in ("0", "false", "no")


async def _patas_error(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": str(error)}, status_code=400 if isinstance(error, ChartError) else 404)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return JSONResponse({"error": error.detail}, status_code=error.status_code)


def dashboard_app(lab_root: Path, token: str) -> Any:
    """The lab's dashboard as an ASGI application that answers only requests with `token`."""
    app = Starlette(
        routes=Dashboard(lab_root).routes(),
        exception_handlers={PatasError: _patas_error, HTTPException: _http_error},
    )  # fmt: skip
    return TokenGate(app, token)
