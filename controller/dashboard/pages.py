"""The dashboard's pages and their JSON twins: devices, runs (filtered), one run (latency distribution,
sortable per-layer table and bar chart), optimize runs (the candidates table the browser refreshes while
the run writes, the latency vs quality plot) and compare. Every handler only reads."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

import controller.dashboard.charts as charts
import controller.dashboard.data as data
from controller.dashboard.devices import device_rows
from controller.dashboard.params import BadRequest, run_filter, run_id, sides, text_param, top_param
from controller.errors import FarmError
from controller.measure.compare import compare_runs
from controller.measure.store import ResultsStore

SVG = "image/svg+xml"


def size_text(n: int | None) -> str:
    """Bytes for people: 812 B, 1.3 KiB, 4.2 MiB, 1.5 GiB."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _fmt(value, digits: int = 3, signed: bool = False, suffix: str = "") -> str:
    if value is None:
        return "-"
    return (f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}") + suffix


def comparison_view(c: dict, top: int = 25) -> dict:
    """The comparison's tables as the page shows them: headers for people, the paired speedup as one cell."""
    head = ["side", "run", "model", "device", "kind", "threads", "p50 ms", "p95 ms", "mean ms", "Δ p50 ms",
            "Δ p95 ms", "speedup (p50)", "paired speedup (95 % CI)"]
    rows = [[r["side"], r["run"], r["model"], r["device"], r["kind"], r["threads"], _fmt(r["p50_ms"]),
             _fmt(r["p95_ms"]), _fmt(r["mean_ms"]), _fmt(r["delta_p50_ms"], signed=True),
             _fmt(r["delta_p95_ms"], signed=True), _fmt(r["speedup"], suffix="x"),
             "-" if r["paired_speedup"] is None else f"{r['paired_speedup']:.3f}x ({r['paired_low']:.3f}-"
             f"{r['paired_high']:.3f}, {r['paired_pairs']} pairs) {r['verdict'] or ''}"] for r in c["latency"]]
    keys = [k[:-3] for k in (c["layers"][0] if c["layers"] else {}) if k.endswith("_ms") and not k.endswith("_delta_ms")]
    layer_head = ["layer", "op", *(f"{k} ms" for k in keys), *(h for k in keys[1:] for h in (f"{k} Δ ms", f"{k} speedup"))]
    layer_rows = [[r["layer"], r["op_type"], *(_fmt(r[f"{k}_ms"]) for k in keys),
                   *(v for k in keys[1:] for v in (_fmt(r[f"{k}_delta_ms"], signed=True),
                                                   _fmt(r[f"{k}_speedup"], suffix="x")))] for r in c["layers"]]
    return {"head": head, "rows": rows, "notes": c["notes"], "layer_head": layer_head,
            "layer_rows": layer_rows[:top] if top > 0 else layer_rows, "layer_count": len(layer_rows)}


class Pages:
    """The handlers, over one open store."""

    def __init__(self, store: ResultsStore, options, templates: Path) -> None:
        self.store = store
        self.options = options
        self.env = Environment(loader=FileSystemLoader(str(templates)), autoescape=select_autoescape(["html"]))
        self.env.filters["ms"] = lambda v: "-" if v is None else f"{v:.3f}"
        self.env.filters["num"] = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"
        self.env.filters["size"] = size_text
        self._svgs: OrderedDict[str, bytes] = OrderedDict()
        self._svg_lock = threading.Lock()    # handlers run in a thread pool

    def render(self, name: str, request: Request, **context) -> HTMLResponse:
        page = self.env.get_template(name).render(request=request, poll_ms=int(self.options.poll_seconds * 1000),
                                                  **context)
        return HTMLResponse(page)

    def svg(self, key: str, draw) -> Response:
        """An SVG, drawn once per key (the key names what it shows and the data's version)."""
        with self._svg_lock:
            body = self._svgs.get(key)
        if body is None:
            body = draw()
            with self._svg_lock:
                self._svgs[key] = body
                while len(self._svgs) > 128:
                    self._svgs.popitem(last=False)
        return Response(body, media_type=SVG, headers={"cache-control": "no-cache"})

    # devices -------------------------------------------------------------------------------------------
    def _devices(self) -> list[dict]:
        rows = device_rows(self.options.inventory, self.options.device_timeout_s)
        for row in rows:
            row.telemetry = data.last_telemetry(self.store, row.name)
        return [r.to_json() for r in rows]

    def devices(self, request: Request) -> HTMLResponse:
        return self.render("devices.html", request, devices=self._devices())

    def devices_json(self, request: Request) -> JSONResponse:
        return JSONResponse({"devices": self._devices()})

    # runs ----------------------------------------------------------------------------------------------
    def _runs(self, request: Request) -> tuple[data.RunFilter, list[dict], int]:
        f = run_filter(request, self.options.page_size)
        rows, total = data.list_runs(self.store, f)
        return f, rows, total

    def runs(self, request: Request) -> HTMLResponse:
        f, rows, total = self._runs(request)
        return self.render("runs.html", request, runs=rows, total=total, f=f)

    def runs_json(self, request: Request) -> JSONResponse:
        _, rows, total = self._runs(request)
        return JSONResponse({"runs": rows, "total": total})

    def _run(self, request: Request) -> dict:
        number = run_id(request.path_params["run_id"])
        run = data.run_detail(self.store, number)
        if run is None:
            raise HTTPException(404, f"there is no run {number} in this store; the runs page lists them")
        return run

    def run(self, request: Request) -> HTMLResponse:
        run = self._run(request)
        layers = self.store.layers(run["id"])
        profiles = data.profiles_of(self.store, run) if run["kind"] == "benchmark" else []
        return self.render("run.html", request, run=run, layers=layers, profiles=profiles,
                           telemetry=data.telemetry_summary(run.get("result")))

    def run_json(self, request: Request) -> JSONResponse:
        run = self._run(request)
        return JSONResponse({**run, "layers": self.store.layers(run["id"])})

    def latency_svg(self, request: Request) -> Response:
        run = self._run(request)
        return self.svg(f"latency:{run['id']}", lambda: charts.latency_svg(run, run.get("times_ms")))

    def layers_svg(self, request: Request) -> Response:
        number = run_id(request.path_params["run_id"])
        return self.svg(f"layers:{number}", lambda: charts.layers_svg(self.store.layers(number)))

    # optimize runs -------------------------------------------------------------------------------------
    def optimize_list(self, request: Request) -> HTMLResponse:
        return self.render("optimize_list.html", request, runs=data.optimize_runs(self.store))

    def optimize_list_json(self, request: Request) -> JSONResponse:
        return JSONResponse({"optimize_runs": [vars(s) for s in data.optimize_runs(self.store)]})

    def _state(self, key: str) -> dict:
        state = data.optimize_state(self.store, key)
        if state is None:
            raise HTTPException(404, f"there is no optimize run '{key}' in this store; the optimize page lists them")
        return state

    def optimize(self, request: Request) -> HTMLResponse:
        return self.render("optimize.html", request, state=self._state(request.path_params["key"]))

    def optimize_json(self, request: Request) -> JSONResponse:
        return JSONResponse(self._state(request.path_params["key"]))

    def tradeoff_svg(self, request: Request) -> Response:
        key, device = request.path_params["key"], request.path_params["device"]
        d = self._state(key)["devices"].get(device)
        if d is None:
            raise HTTPException(404, f"optimize run '{key}' has no rows for device '{device}'")
        rows = [r for r in d["rows"] if r["p50_ms"] is not None and r[d["quality"]] is not None
                and r["status"] != "failed"]
        version = hashlib.sha1(repr((rows, d["chosen"])).encode()).hexdigest()
        return self.svg(f"tradeoff:{key}:{device}:{version}",
                        lambda: charts.tradeoff_svg(device, rows, d["quality"], d["chosen"]))

    # compare -------------------------------------------------------------------------------------------
    def _compare(self, request: Request) -> tuple[list[str], dict | None]:
        chosen = sides(request)
        if not chosen:
            return chosen, None
        model, device = text_param(request, "model"), text_param(request, "device")
        try:   # the same comparison as `farmctl compare`
            result = compare_runs(self.store, chosen, model=model, device=device)
        except FarmError as exc:
            raise BadRequest(str(exc)) from None
        return chosen, result.to_json()

    def compare(self, request: Request) -> HTMLResponse:
        top = top_param(request)
        chosen, comparison = self._compare(request)
        return self.render("compare.html", request, sides=chosen,
                           view=comparison_view(comparison, top) if comparison else None)

    def compare_json(self, request: Request) -> JSONResponse:
        chosen, comparison = self._compare(request)
        if comparison is None:
            raise BadRequest("give the runs to compare: /api/compare?sides=3,7 (run ids, model:NAME or device:NAME)")
        return JSONResponse(comparison)
