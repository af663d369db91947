"""The calls a piece of code makes: a cost measure that does not depend on the machine."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def calls_made(function: Callable[..., object], *args: Any) -> list[tuple[str, str]]:
    """Every call `function(*args)` makes, itself and those under it, in order.

    Each as (event, name): "call" for a Python function, "c_call" for a builtin. The
    collector is off meanwhile: what it calls back (`gc.callbacks`) is not the function's.
    """
    made: list[tuple[str, str]] = []

    def note(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            made.append((event, frame.f_code.co_name))
        elif event == "c_call":
            made.append((event, getattr(arg, "__name__", "?")))

    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(note)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return made
