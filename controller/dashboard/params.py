"""The dashboard's query and path parameters, checked before anything reaches the store: a run id the store
cannot hold (past 2**63 - 1, negative, not digits) is a missing run, a 404; a filter value or compare side
over MAX_TEXT characters, a number out of its range or not a whole number is a 400; each with one sentence,
never a 500 (SQLite's 'LIKE or GLOB pattern too complex', its 64-bit integers, Python's 4300-digit int())."""

from __future__ import annotations

from datetime import date

from starlette.exceptions import HTTPException
from starlette.requests import Request

import controller.dashboard.data as data

MAX_TEXT = 200              # characters in a filter value (model, device, kind, dates) or a compare side
MAX_SIDES = 26              # sides one comparison may have (A to Z)
MAX_RUN_ID = 2**63 - 1      # the largest id the store holds (SQLite's INTEGER, PostgreSQL's bigint)
MAX_TOP = 100_000           # layers the compare page may list (0: every one)


class BadRequest(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


def shown(text: str, limit: int = 40) -> str:
    """`text` as a message quotes it: the first `limit` characters of a long one, with its length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def whole_number(text: str, high: int) -> int | None:
    """`text` as a whole number from 0 to `high`, or None: ASCII digits only (int() would take '٣', and
    str.isdigit() says yes to '²', which int() refuses), never converted when longer than `high` allows."""
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > len(str(high)):
        return None
    number = int(digits)
    return number if number <= high else None


def run_id(text: str) -> int:
    """A run id from the address; anything the store cannot hold is a missing run (404)."""
    number = whole_number(text, MAX_RUN_ID)
    if number is None:
        raise HTTPException(404, f"there is no run {shown(text)} in this store; the runs page lists them")
    return number


def text_param(request: Request, name: str) -> str | None:
    """A query parameter's text (stripped; None when empty), refused over MAX_TEXT characters."""
    values = request.query_params.getlist(name)
    for value in values:
        if len(value) > MAX_TEXT:
            raise BadRequest(f"{name} is {len(value):,} characters long; give at most {MAX_TEXT} characters")
    return (values[-1].strip() or None) if values else None


def top_param(request: Request, default: int = 25) -> int:
    """?top=: how many layers the compare page lists, 0 to MAX_TOP (0: every one)."""
    text = request.query_params.get("top")
    if text is None:
        return default
    number = whole_number(text.strip(), MAX_TOP)
    if number is None:
        raise BadRequest(f"top '{shown(text)}' is not a whole number from 0 to {MAX_TOP:,} (0: every layer)")
    return number


def _date(request: Request, name: str) -> date | None:
    text = text_param(request, name)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"'{text}' is not a date for {name}; write it as YYYY-MM-DD") from None


def run_filter(request: Request, limit: int) -> data.RunFilter:
    """The runs page's filter from its query (model, device, kind, since, until)."""
    model, device, kind = (text_param(request, name) for name in ("model", "device", "kind"))
    if kind and kind not in data.KINDS:
        raise BadRequest(f"kind '{kind}' is not one of {', '.join(data.KINDS)}")
    return data.RunFilter(model=model, device=device, kind=kind, since=_date(request, "since"),
                          until=_date(request, "until"), limit=limit)


def sides(request: Request) -> list[str]:
    """?sides=3,7 (or 'model:a device:pi4', or repeated; ?runs= from the runs page's ticks) as selectors,
    each one compare_runs can look up: at most MAX_SIDES of them, none over MAX_TEXT characters, and every
    run id one the store can hold."""
    q = request.query_params
    chosen = [v for item in q.getlist("sides") + q.getlist("runs") for v in item.replace(",", " ").split() if v]
    if len(chosen) > MAX_SIDES:
        raise BadRequest(f"{len(chosen)} sides are too many to compare; give at most {MAX_SIDES}")
    for side in chosen:
        if len(side) > MAX_TEXT:
            raise BadRequest(f"a side is {len(side):,} characters long; give at most {MAX_TEXT} characters")
        prefix, _, rest = side.partition(":")
        number = rest if prefix == "run" and rest else side      # as compare.resolve reads a run id
        if number.isdigit() and whole_number(number, MAX_RUN_ID) is None:
            raise BadRequest(f"no run {shown(number)} in this store; run ids are whole numbers up to {MAX_RUN_ID}")
    return chosen
