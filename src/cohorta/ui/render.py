"""Templates and the filters they format with. Formatting only: what a page shows comes from the services."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from cohorta.access.models import Permission
from cohorta.access.service import Principal

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes .html: user input is escaped


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) or digits:
        return f"{float(value):,.{digits}f}"
    return f"{int(value):,}"


def _money(value: Decimal | str | None, currency: str = "") -> str:
    if value is None:
        return "—"
    amount = Decimal(value)
    text = f"{amount:,.2f}" if amount == amount.quantize(Decimal("0.01")) else f"{amount:,}"
    return f"{text} {currency}".strip()


def _when(value: datetime | str | None, zone: ZoneInfo | None = None, *, seconds: bool = False) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if zone is not None and value.tzinfo is not None:
            value = value.astimezone(zone)
        return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


templates.env.filters["number"] = _number
templates.env.filters["money"] = _money
templates.env.filters["when"] = _when


def page(
    request: Request, name: str, principal: Principal | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a template with what every page needs: the caller, their rights, the CSRF token, the settings."""
    settings = request.app.state.settings
    base = {
        "principal": principal,
        "can_write": principal is not None and principal.has(Permission.write),
        "is_admin": principal is not None and principal.has(Permission.admin),
        "csrf_token": principal.csrf_token if principal else None,
        "currency": settings.currency,
        "zone": settings.tz,
        "htmx": request.headers.get("HX-Request") == "true",
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
