"""The console's routes on aiohttp: the pages, their actions, the static files, and the standalone server.

``reverify up`` mounts these routes on the web server its worker already runs (Faust's aiohttp application,
beside ``/healthz``, ``/readyz`` and ``/api/query``); ``reverify console`` runs them alone
(:func:`create_web_app`) against a ClickHouse server or the embedded database. History is read through the
read-only queries of ``reverify query`` (:mod:`sinks.analytics`, :mod:`sinks.series`), each page in one worker
thread with its own ClickHouse handle, so the event loop (the worker's inputs) never waits on a query. Actions
publish what the CLI publishes (:func:`streams.cli.control.decide`, :func:`streams.cli.alerts.acknowledge`,
:func:`streams.cli.alerts.silence_alerts`), recorded under the console's ``by`` name.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from reverify.streams.console import pages
from reverify.streams.console.auth import access_middleware
from reverify.streams.console.html import Markup
from reverify.streams.console.live import LiveAlerts
from reverify.streams.settings import Settings

log = logging.getLogger("reverify.console")
STATIC = Path(__file__).parent / "static"
_DRIFT_CHARTS = 6
T = TypeVar("T")


def answer_query(settings: Settings, request: Any) -> tuple[dict[str, Any], int]:
    """One ``/api/query`` request (what ``reverify query`` sends) answered from the history, with its status."""
    from reverify.sinks.analytics import QueryError, execute
    from reverify.sinks.clickhouse import connect

    client = connect(settings.clickhouse)
    try:
        return execute(client, request), 200
    except QueryError as exc:
        return {"error": str(exc)}, 400
    finally:
        client.close()


class Console:
    """The pages and actions over one history (``settings.clickhouse``) and one Kafka (``settings.kafka``)."""

    def __init__(self, settings: Settings, by: str) -> None:
        self.settings = settings
        self.by = by
        self._notices: OrderedDict[str, str] = OrderedDict()
        self.live = LiveAlerts(keep=10)  # followed from the first look at the fleet page
        self._following = False

    # ----------------------------------------------------------------------------------------- reading

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._blocking(self._with_client, fn, *args)

    def _with_client(self, fn: Callable[..., Any], *args: Any) -> Any:
        from reverify.sinks.clickhouse import connect

        client = connect(self.settings.clickhouse)
        try:
            return fn(client, *args)
        finally:
            client.close()

    async def _page(self, render: Callable[..., Markup], fn: Callable[..., Any], *args: Any) -> web.Response:
        from reverify.sinks.analytics import QueryError

        try:
            data = await self._read(fn, *args)
        except QueryError as exc:
            return _html(pages.error_page("The history could not answer", str(exc)), 400)
        except Exception as exc:  # the database is away: say so on the page, keep serving
            log.warning("console: reading the history failed: %s", exc)
            return _html(pages.error_page("The history could not answer", f"{type(exc).__name__}: {exc}"), 503)
        return _html(render(*data) if isinstance(data, tuple) else render(data))

    def _notice(self, request: web.Request) -> str:
        return self._notices.get(request.query.get("done", ""), "")

    def _redirect(self, to: str, text: str) -> web.Response:
        key = secrets.token_hex(6)
        self._notices[key] = text
        while len(self._notices) > 200:
            self._notices.popitem(last=False)
        return web.Response(status=303, headers={"Location": f"{to}?done={key}"})

    # ----------------------------------------------------------------------------------------- pages

    async def fleet(self, request: web.Request) -> web.Response:
        if not self._following:
            self._following = True
            self.live.follow(self.settings)
        return await self._page(lambda *data: pages.fleet_page(*data, self.live.recent()), _fleet_data)

    async def agents(self, request: web.Request) -> web.Response:
        from reverify.sinks import series

        return await self._page(pages.agents_page, series.agents)

    async def agent(self, request: web.Request) -> web.Response:
        name, task = request.query.get("name", ""), request.query.get("task", "")
        if not name:
            raise web.HTTPSeeOther("/agents")
        return await self._page(lambda *d: pages.agent_page(name, task, *d), _agent_data, name)

    async def drift(self, request: web.Request) -> web.Response:
        return await self._page(pages.drift_page, _drift_data)

    async def drift_series(self, request: web.Request) -> web.Response:
        q = request.query
        row = {"agent": q.get("agent", ""), "feature": q.get("feature", ""), "variant": q.get("variant", "")}
        return await self._page(lambda *d: pages.drift_series_page(row, *d), _drift_series_data, row)

    async def alerts(self, request: web.Request) -> web.Response:
        notice = self._notice(request)
        return await self._page(lambda d: pages.alerts_page(d, notice), _canned, "alerts")

    async def proposals(self, request: web.Request) -> web.Response:
        notice = self._notice(request)
        return await self._page(lambda *d: pages.proposals_page(*d, notice=notice), _proposal_data)

    # ----------------------------------------------------------------------------------------- actions

    async def _act(self, back: str, action: Callable[[], str]) -> web.Response:
        from reverify.streams.cli.common import UserError

        try:
            text = await self._blocking(action)
        except (UserError, ValueError) as exc:
            text = f"error: {exc}"
        return self._redirect(back, text)

    async def ack(self, request: web.Request) -> web.Response:
        from reverify.streams.cli.alerts import acknowledge

        fingerprint = str((await request.post()).get("fingerprint", ""))

        def act() -> str:
            alert, _records = acknowledge(self.settings, fingerprint, self.by)
            return f"acknowledged {alert['title']} ({alert['fingerprint']}) as {self.by}"

        return await self._act("/alerts", act)

    async def silence(self, request: web.Request) -> web.Response:
        from reverify.processors.assurance import parse_duration
        from reverify.streams.cli.alerts import parse_matchers, silence_alerts

        form = await request.post()
        items = [m.strip() for m in str(form.get("match", "")).split(",") if m.strip()]
        duration, comment = str(form.get("for", "")), str(form.get("comment", "")).strip()

        def act() -> str:
            matchers = parse_matchers(items)
            if not matchers or not comment:
                raise ValueError("a silence needs at least one LABEL=GLOB and a comment")
            for_ms = parse_duration(duration)
            if for_ms <= 0:
                raise ValueError(f"for {duration!r}: use a duration > 0 such as 30m, 2h")
            args, agents, _records = silence_alerts(self.settings, matchers, for_ms, self.by, comment)
            what = " ".join(f"{k}={v}" for k, v in matchers.items())
            return f"silenced {what} for {duration} as {self.by} ({args['silence_id']}, {len(agents)} agents)"

        return await self._act("/alerts", act)

    async def approve(self, request: web.Request) -> web.Response:
        return await self._decide(request, approved=True)

    async def reject(self, request: web.Request) -> web.Response:
        return await self._decide(request, approved=False)

    async def _decide(self, request: web.Request, approved: bool) -> web.Response:
        from reverify.streams.cli.control import decide

        form = await request.post()
        proposal_id = str(form.get("proposal_id", ""))
        comment = str(form.get("comment", "")) or "from the console"

        def act() -> str:
            proposal, record = decide(self.settings, proposal_id, approved, self.by, comment)
            verb = "approved" if approved else "rejected"
            return f"{verb} {proposal_id}: {proposal['variant_id']} for {proposal['agent_name']} by {record['by']}"

        return await self._act("/proposals", act)


def _html(markup: str, status: int = 200) -> web.Response:
    return web.Response(text=markup, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------------- what each page reads (threads)


def _canned(client: Any, name: str, **filters: Any) -> dict[str, Any]:
    from reverify.sinks.analytics import canned

    return canned(client, name, **filters)


def _fleet_data(client: Any) -> tuple[Any, ...]:
    from reverify.sinks import series
    from reverify.sinks.dashboard import dashboard

    board = dashboard(client)
    board["running_experiments"] = _experiment_statuses(client, board.get("running_experiments") or [])
    return board, series.fleet(client)


def _experiment_statuses(client: Any, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each running experiment's ``reverify experiment status``: units, lift, interval, decision, from the history."""
    if not running:
        return []
    from reverify.processors.experiments import evaluate
    from reverify.sinks.analytics import run_sql
    from reverify.streams.cli.experiment import arm_summaries
    from reverify.streams.restore import EXPERIMENT_FIELDS, LATEST_EXPERIMENTS_SQL

    def query(sql: str, params: dict[str, Any]) -> list[list[Any]]:
        return run_sql(client, sql, params)["rows"]

    records = {
        r["name"]: r
        for r in (dict(zip(EXPERIMENT_FIELDS, v, strict=True)) for (v,) in query(LATEST_EXPERIMENTS_SQL, {}))
    }
    now_ms = int(time.time() * 1000)
    return [
        evaluate(records[r["name"]], arm_summaries(query, records[r["name"]], now_ms))
        for r in running
        if r["name"] in records
    ]


def _agent_data(client: Any, name: str) -> tuple[Any, ...]:
    from reverify.sinks import series

    return (
        series.agent(client, name),
        _canned(client, "leaderboard", agent=name),
        _canned(client, "timeline", agent=name),
    )


def _drift_data(client: Any) -> tuple[Any, ...]:
    from reverify.sinks import series

    answer = _canned(client, "drift", since="1h")
    rows = [dict(zip(answer["columns"], r, strict=True)) for r in answer["rows"][:_DRIFT_CHARTS]]
    return answer, [(row, series.drift_series(client, row["agent"], row["feature"], row["variant"])) for row in rows]


def _drift_series_data(client: Any, row: dict[str, str]) -> tuple[Any, ...]:
    from reverify.sinks import series

    data = series.drift_series(client, row["agent"], row["feature"], row["variant"])
    latest = data.get("latest")
    return data, (series.histograms(client, row["agent"], row["feature"], row["variant"], latest) if latest else None)


def _proposal_data(client: Any) -> tuple[Any, ...]:
    from reverify.sinks import series
    from reverify.sinks.dashboard import dashboard

    return dashboard(client)["pending_proposals"], series.approvals(client)


# --------------------------------------------------------------------------------- routes and servers


def add_routes(router: web.UrlDispatcher, console: Console) -> None:
    """The console's pages, actions and static files on ``router`` (a page at ``/`` comes first)."""
    for path, handler in (
        ("/", console.fleet),
        ("/agents", console.agents),
        ("/agent", console.agent),
        ("/drift", console.drift),
        ("/drift/series", console.drift_series),
        ("/alerts", console.alerts),
        ("/proposals", console.proposals),
    ):
        router.add_get(path, handler)
    for path, handler in (
        ("/actions/ack", console.ack),
        ("/actions/silence", console.silence),
        ("/actions/approve", console.approve),
        ("/actions/reject", console.reject),
    ):
        router.add_post(path, handler)
    router.add_static("/static/", STATIC)


def create_web_app(settings: Settings, by: str) -> web.Application:
    """``reverify console``: the pages, ``/api/query``, ``/healthz`` and ``/readyz`` (the history answers)."""
    app = web.Application(middlewares=[access_middleware(settings.web_token)])
    console = Console(settings, by)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def readyz(_request: web.Request) -> web.Response:
        try:
            await console._read(lambda client: client.query("SELECT 1"))
        except Exception as exc:
            return web.json_response({"ready": False, "detail": str(exc).splitlines()[0][:200]}, status=503)
        return web.json_response({"ready": True})

    async def query(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the request body must be a JSON object"}, status=400)
        result, status = await console._blocking(answer_query, settings, body)
        return web.json_response(result, status=status)

    async def stop_following(_app: web.Application) -> None:
        console.live.close()

    app.on_cleanup.append(stop_following)
    add_routes(app.router, console)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/api/query", query)
    return app
