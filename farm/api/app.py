"""farm-api's routes, in Ironic's shapes where Ironic has one, over the same
views the CLI renders (farm.fleet.views). FastAPI validates every request and
writes the OpenAPI document (/openapi.json); handlers are plain functions,
run on its thread pool, because the Store is synchronous redis-py. Two
exceptions, on the event loop, for Prometheus's hot path: the token check
(pure CPU) and /ipmi, which reads through farm.store.aio (asyncio): a thread
hop each cost more than the rest of a scrape.

Errors are JSON with a stable code: {"error": {"code": ..., "message": ...}}.
"""

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from typing import Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from farm import errors
from farm.api import ipmi
from farm.fleet import views
from farm.fleet.selection import SelectionError
from farm.power import plan

# Ironic's words for farm's power actions and states (reset is farm's own)
ACTIONS = {"power on": "on", "power off": "off", "rebooting": "cycle", "reset": "reset"}
TARGET_OF = {"on": "power on", "off": "power off", "cycle": "rebooting", "reset": "rebooting"}
STATES = {"on": "power on", "off": "power off"}
COMMAND_TTL = 30.0  # seconds a power command waits for its worker before it expires unrun
LEAD = 2.0          # seconds from writing a plan to its first wave (as the CLI)
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
CHUNK = 65536  # /v1/targets goes out in pieces: a client that does not read holds one
STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})\Z")
LOG = logging.getLogger("farm.api")


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code = status, code


class PowerTarget(BaseModel):
    target: Literal["power on", "power off", "rebooting"]  # one node: no reset (as Ironic)


class Desired(BaseModel):
    state: Literal["on", "off"] | None = Field(description="null: farm keeps no state")


class Maintenance(BaseModel):
    maintenance: bool
    reason: str = Field("", max_length=256)


class PowerAction(BaseModel):
    select: str = Field(min_length=1, max_length=4096, description="a node selection")
    target: Literal["power on", "power off", "rebooting", "reset"]
    batch: int | None = Field(None, ge=1, le=plan.MAX_BATCH)
    interval: float | None = Field(None, ge=0, le=plan.MAX_INTERVAL, allow_inf_nan=False)
    spread_by: str | None = Field(None, max_length=63)


def create_app(store, tokens, settings, reader):
    """reader: a farm.store.aio.AsyncReader on the same Redis, closed with the app."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await reader.close()

    app = FastAPI(title="farm", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="farm over HTTP: nodes, power, desired state, events, bulk "
                              "power actions, Prometheus service discovery.")
    bearer = HTTPBearer(auto_error=False)

    async def caller(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        # farm.api.guard checked the token already (on the scrape path, once
        # is enough); without the guard in front, check it here
        found = request.scope.get("state", {}).get("farm_caller")
        if found is None and credentials:
            found = tokens.check(credentials.credentials)
        if found is None:
            raise ApiError(401, "unauthorized", "a valid bearer token is needed")
        return found

    async def operator(who=Depends(caller)):
        if who[0] != "operator":
            raise ApiError(403, "forbidden", f"token {who[1]} is a reader; acting needs operator")
        return who

    @app.exception_handler(ApiError)
    def api_error(request, exc):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": {"code": exc.code, "message": str(exc)}}, exc.status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    def invalid(request, exc):
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": {"code": "invalid_request", "message": where}}, 400)

    @app.exception_handler(HTTPException)
    def http_error(request, exc):  # no such route, or not with that method
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(errors.BackendUnavailable)
    @app.exception_handler(errors.BackendRefused)
    def backend(request, exc):
        # the cause names Redis's address and, for a script, its SHA: the log
        # keeps it, the answer does not
        LOG.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": {"code": "backend_unavailable", "message":
                                       "farm's Redis did not answer; farm-api's log has the "
                                       "cause"}}, 503)

    def known(name):
        if not store.existing_names([name]):
            raise ApiError(404, "node_not_found", f"no node named {name}")

    def by(who):
        return f"{who[1]}@api"

    @app.get("/v1/nodes")
    def list_nodes(request: Request, who=Depends(caller),
                   select: str | None = Query(None, description="a selection; all nodes if absent"),
                   fields: str | None = Query(None, description="comma-separated fields"),
                   limit: int = Query(100, ge=1, le=1000),
                   marker: str | None = Query(None, description="the last name of the page before")):
        """Nodes in name order, a page at a time (Ironic's limit and marker)."""
        if select:
            try:
                chosen = [n for n in views.select(store, select) if marker is None or n > marker]
            except SelectionError as exc:
                raise ApiError(400, "invalid_selection", str(exc)) from None
            names, more = chosen[:limit], len(chosen) > limit
        else:
            names, _ = views.page_names(store, marker, limit + 1)
            names, more = names[:limit], len(names) > limit
        controls = store.controls_of(names)
        rows = []
        for row in views.node_rows(store, names):
            row.update(desired_power_state=controls.get(row["name"], {}).get("desired"),
                       maintenance=bool(controls.get(row["name"], {}).get("maintenance")))
            if fields:
                wanted = {"name", *fields.split(",")}
                row = {k: v for k, v in row.items() if k in wanted}
            rows.append(row)
        following = (str(request.url.include_query_params(marker=names[-1]))
                     if more and names else None)
        return {"nodes": rows, "next": following}

    @app.get("/v1/nodes/{name}")
    def get_node(name: str, who=Depends(caller)):
        """Everything farm holds of a node but its secrets."""
        detail = store.node_detail(name)
        if detail is None:
            raise ApiError(404, "node_not_found", f"no node named {name}")
        return detail

    @app.get("/v1/nodes/{name}/states")
    def get_states(name: str, who=Depends(caller)):
        """Ironic's node states: power_state, target_power_state, last_error,
        and how old the reading is."""
        known(name)
        state = store.node_states([name])[name]
        control = store.controls_of([name])[name]
        action_id = store.nodes_in_actions([name]).get(name)
        record = store.action(action_id) if action_id else None
        target = TARGET_OF[record["action"]] if record else None
        seen = views.as_float(state.get("seen_at"))
        return {"power_state": STATES.get(state.get("power_state")),
                "target_power_state": target,
                "last_error": state.get("last_error") or None,
                "reading_age": round(store.server_time() - seen, 3) if seen else None,
                "desired_power_state": control.get("desired"),
                "maintenance": bool(control.get("maintenance")),
                "maintenance_reason": control.get("maintenance") or None}

    @app.put("/v1/nodes/{name}/states/power", status_code=202)
    def set_power(name: str, body: PowerTarget, who=Depends(operator)):
        """Power a node on or off, or reboot it (power cycle), through the
        worker that owns it, as `farm nodes power` does; 202 once queued."""
        known(name)
        if store.controls_of([name])[name].get("maintenance"):
            raise ApiError(409, "node_in_maintenance", f"{name} is in maintenance")
        owner, why = views.owner_of(store, name)
        if owner is None:
            raise ApiError(503, "no_live_worker", f"no live worker owns {name}: {why}")
        command = views.send_command(store, owner, "power", name, ACTIONS[body.target], by(who),
                                     COMMAND_TTL)
        return {"node": name, "target": body.target, "command": command, "worker": owner}

    @app.put("/v1/nodes/{name}/desired")
    def set_desired(name: str, body: Desired, who=Depends(operator)):
        """The power state farm keeps the node in (null: none)."""
        if not store.set_control(name, "desired", by(who), desired=body.state or ""):
            raise ApiError(404, "node_not_found", f"no node named {name}")
        return {"node": name, "desired_power_state": body.state}

    @app.put("/v1/nodes/{name}/maintenance")
    def set_maintenance(name: str, body: Maintenance, who=Depends(operator)):
        """In maintenance farm stops acting on a node's power."""
        value = (body.reason or f"set by {by(who)}") if body.maintenance else ""
        if not store.set_control(name, "maintenance", by(who), maintenance=value):
            raise ApiError(404, "node_not_found", f"no node named {name}")
        return {"node": name, "maintenance": body.maintenance, "reason": value or None}

    long_polls = asyncio.Semaphore(settings.api.max_long_polls)

    @app.get("/v1/status")
    def get_status(who=Depends(caller)):
        """What `farm status --json` prints: the leader, the workers, each
        site (its nodes, workers, how many were read within 2 intervals),
        and `dark`: the sites with nodes and no live worker serving them."""
        return views.status_report(store, settings.worker.poll_interval, store.server_time())

    @app.get("/v1/events")
    async def get_events(who=Depends(caller),
                         since: str | None = Query(None, max_length=41,
                                                   description="the last event id seen"),
                         node: str | None = Query(None, description="a selection"),
                         type: Literal["power", "sensor", "sel", "action"] | None = None,  # noqa: A002
                         limit: int = Query(100, ge=1, le=1000),
                         wait: float = Query(0, ge=0, le=30,
                                             description="with since: wait up to this many "
                                                         "seconds for an event (a long poll)")):
        """Events oldest first; with `since`, those after it (the next
        request passes `last` back). A long poll waits on the event loop,
        not on a thread: at most [api] max_long_polls at once (429 past)."""
        if since is not None:
            match = STREAM_ID.match(since)
            if not match or max(int(match.group(1)), int(match.group(2))) >= 2**64:
                raise ApiError(400, "invalid_request",
                               "since: an event id, two whole numbers below 2^64 as in "
                               "1733400000000-0")
        try:
            chosen = set(await run_in_threadpool(views.select, store, node)) if node else None
        except SelectionError as exc:
            raise ApiError(400, "invalid_selection", str(exc)) from None
        if since is None:
            found = await run_in_threadpool(views.recent_events, store, limit, chosen, type)
        elif wait <= 0:
            found, since = await wait_for_events(since, 0, limit, chosen, type)
        else:
            if long_polls.locked():
                raise ApiError(429, "too_many_long_polls",
                               f"{settings.api.max_long_polls} long polls wait already "
                               f"([api] max_long_polls); retry, or poll without wait")
            async with long_polls:
                found, since = await wait_for_events(since, wait, limit, chosen, type)
        events = [dict(f, id=i, recorded_at=int(i.split("-")[0]) / 1000) for i, f in found]
        return {"events": events, "last": events[-1]["id"] if events else since}

    async def wait_for_events(after, wait, limit, chosen, kind):
        found, deadline = [], time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            # blocking reads a second at a time: below the reader's socket timeout
            chunk = await reader.events_after(after, int(min(left, 1.0) * 1000) if left > 0
                                              else None, limit)
            after = chunk[-1][0] if chunk else after
            found += [e for e in chunk if views.event_matches(e[1], chosen, kind)]
            if found or left <= 0:
                return found[:limit], after

    @app.post("/v1/power-actions", status_code=202)
    def post_action(body: PowerAction, who=Depends(operator)):
        """A staggered bulk power action (docs/operations.md, "Bulk power"):
        a plan in Redis that the owning workers run in waves."""
        try:
            names = views.select(store, body.select)
        except SelectionError as exc:
            raise ApiError(400, "invalid_selection", str(exc)) from None
        action = ACTIONS[body.target]
        try:
            steps, batch, interval, notes = views.plan_action(
                store, settings.power, names, action, body.batch, body.interval, body.spread_by)
            action_id = uuid.uuid4().hex[:12]
            steps = views.write_action(store, action_id, steps, action, batch, interval,
                                       body.spread_by, by(who), LEAD)
        except views.Refused as exc:
            status = {"node_in_maintenance": 409, "no_live_worker": 503,
                      "node_busy": 409, "invalid_plan": 400,
                      "action_expired": 503}.get(exc.code, 404)
            raise ApiError(status, exc.code, str(exc)) from None
        return {"id": action_id, "nodes": len(steps), "waves": steps[-1].wave + 1,
                "first_at": steps[0].not_before, "last_at": steps[-1].not_before,
                "notes": notes}

    @app.get("/v1/power-actions/{action_id}")
    def get_action(action_id: str, who=Depends(caller)):
        """The action and each node's step: pending, running, done, failed
        (with the error) or cancelled."""
        record = store.action(action_id)
        if record is None:
            raise ApiError(404, "action_not_found", f"no action {action_id}")
        return {"action": record, "nodes": store.action_steps(action_id)}

    modules = dict(settings.api.ipmi_modules)
    intervals = {task: seconds for task, seconds in (
        ("power", settings.worker.poll_interval), ("sensors", settings.sensors.interval),
        ("sel", settings.sel.interval)) if task in settings.tasks.enabled}
    names = ipmi.manufacturers(settings.api.enterprise_numbers_file)

    @app.get("/ipmi", response_class=PlainTextResponse)
    async def ipmi_exporter(who=Depends(caller),
                      target: str = Query(max_length=255, description="a node's name"),
                      module: str = Query("default", description="[api] ipmi_modules")):
        """ipmi_exporter's multi-target answer for one node, from Redis
        (docs/operations.md, "/ipmi"): never a BMC command."""
        started = time.perf_counter()
        if module not in modules:
            raise ApiError(400, "unknown_module", f"no module {module} in [api] ipmi_modules")
        entry, state, sensors, now = await reader.exporter_view(target)
        if entry is None:
            raise ApiError(404, "node_not_found", f"no node named {target}")
        text = ipmi.render(state, sensors, now, intervals, modules[module],
                           entry.get("driver", "ipmi"), time.perf_counter() - started, names)
        return PlainTextResponse(text, media_type=EXPOSITION)

    rendered = {}  # inventory version -> /v1/targets's body, shared by every client

    def targets_body():
        version = store.inventory_version()
        if version not in rendered:
            out = []
            for node in store.load_nodes()[1]:
                labels = {"__meta_farm_node": node.name, "__meta_farm_driver": node.driver,
                          "__meta_farm_site": node.site}
                labels.update({f"__meta_farm_label_{re.sub(r'[^A-Za-z0-9_]', '_', k)}": v
                               for k, v in node.labels})
                out.append({"targets": [node.name], "labels": labels})
            rendered.clear()
            rendered[version] = json.dumps(out, separators=(",", ":")).encode()
        return rendered[version]

    @app.get("/v1/targets")
    def targets(who=Depends(caller)):
        """Every node as a Prometheus target (http_sd_configs), its site as
        __meta_farm_site, its labels as __meta_farm_label_<key>."""
        body = targets_body()
        # one body per inventory version, sent in pieces: a client that does
        # not read holds one piece, not a copy of the whole (2.5 MB at
        # 100,000 nodes: 100 such clients took farm-api from 127 to 253 MB)
        pieces = (body[i:i + CHUNK] for i in range(0, len(body), CHUNK))
        return StreamingResponse(pieces, media_type="application/json",
                                 headers={"content-length": str(len(body))})

    return app
