"""GC pause timing and the generation-0 threshold used while serving."""

from __future__ import annotations

import gc

from signing_gateway.runtime.gc_tuning import GcPauses, gc_threshold0


def test_pauses_are_counted_per_generation_while_installed():
    """A forced full collection shows up under gen2 with a positive pause; none after uninstall."""
    pauses = GcPauses()
    pauses.install()
    try:
        gc.collect(2)
    finally:
        pauses.uninstall()
    snapshot = pauses.snapshot()
    assert snapshot["gen2"]["collections"] >= 1
    assert snapshot["gen2"]["maxSeconds"] > 0
    gc.collect(2)
    assert pauses.snapshot()["gen2"]["collections"] == snapshot["gen2"]["collections"]


def test_threshold_is_set_for_the_block_and_restored():
    """gc_threshold0 sets generation 0's threshold, keeps the others, and restores all."""
    before = gc.get_threshold()
    with gc_threshold0(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.isenabled()
    assert gc.get_threshold() == before


def test_none_leaves_the_threshold_alone():
    """None means Python's own thresholds."""
    before = gc.get_threshold()
    with gc_threshold0(None):
        assert gc.get_threshold() == before
