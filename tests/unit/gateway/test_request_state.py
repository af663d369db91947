"""What the gateway adds to each request's copy of the lifespan state must not grow its table."""

from __future__ import annotations

import sys

from signing_gateway.api.deps import GatewayState


def test_the_request_id_fits_the_copy_of_the_lifespan_state() -> None:
    """Each request gets a copy of the lifespan state, and the gateway adds `request_id`.

    One key more than the copy's table holds doubles it for every request in flight (~200 B,
    see `GatewayState`): a new lifespan key, or a new per-request key on `request.state`, has
    to go elsewhere (a scope key of its own, as the CPU gate's arrival time does).
    """
    lifespan_state = dict.fromkeys(GatewayState.__annotations__)
    request_state = lifespan_state.copy()
    copied = sys.getsizeof(request_state)
    request_state["request_id"] = "0" * 32
    assert sys.getsizeof(request_state) == copied, sorted(request_state)
