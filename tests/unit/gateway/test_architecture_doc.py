"""docs/architecture.md's request flow names the middlewares in the order the app runs them."""

from __future__ import annotations

import re
from pathlib import Path

from signing_gateway import app as app_module
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import Settings

ARCHITECTURE = Path(__file__).parents[3] / "docs" / "architecture.md"


def _diagram() -> str:
    """The code block under "One request, end to end"."""
    section = ARCHITECTURE.read_text().split("## One request, end to end", 1)[1]
    return section.split("```", 2)[1]


def test_the_request_flow_lists_the_middlewares_outermost_first() -> None:
    """Each middleware the app adds, in its order, and no other, as the diagram draws them."""
    app = app_module.create_app(Settings(auth=AuthSettings(mode="disabled")))
    # Outermost first; each `cls` is a middleware class (typed as a factory by Starlette).
    served = [m.cls.__name__ for m in app.user_middleware]  # type: ignore[attr-defined]
    drawn = re.findall(r"\b([A-Z]\w*Middleware)\b", _diagram())
    assert drawn == served
