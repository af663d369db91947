"""A signer's silence: the union of the unanswered attempts' time on the wire since its answer."""

from __future__ import annotations

import pytest

from signing_gateway.resilience.silence import Silence


def test_overlapping_attempts_count_each_instant_once() -> None:
    """Two attempts on the wire at once wait as long as the time they cover together."""
    silence = Silence(attempt_timeout=10.0)
    silence.add(0.0, 1.0)
    silence.add(0.5, 1.5)
    assert silence.waited(1.5, 1.5) == pytest.approx(1.5)


def test_an_attempt_outliving_later_ones_fills_the_gaps_between_them() -> None:
    """A patient attempt ending after two short ones counts the time they did not cover."""
    silence = Silence(attempt_timeout=10.0)
    silence.add(1.0, 2.0)
    silence.add(3.0, 4.0)
    silence.add(0.0, 5.0)  # sent first, timed out last
    assert silence.waited(5.0, 5.0) == pytest.approx(5.0)
    silence.add(4.5, 6.0)
    assert silence.waited(6.0, 6.0) == pytest.approx(6.0)


def test_a_quiet_spell_is_no_waiting() -> None:
    """Time with nothing on the wire does not count; the waits before and after add up."""
    silence = Silence(attempt_timeout=10.0)
    silence.add(0.0, 1.0)
    assert silence.waited(11.0, 10.0) == pytest.approx(2.0)  # one on the wire since 10.0


def test_an_attempt_under_way_is_not_counted_twice_once_ended() -> None:
    """Judged after it left the wire, an attempt's own time counts once."""
    silence = Silence(attempt_timeout=10.0)
    silence.add(0.0, 1.0)
    assert silence.waited(1.0, 0.0) == pytest.approx(1.0)


def test_an_answer_starts_the_waiting_afresh() -> None:
    """Nothing before the signer's last answer counts, an attempt sent before it included."""
    silence = Silence(attempt_timeout=10.0)
    silence.add(0.0, 3.0)
    silence.ends(3.5)
    assert silence.waited(4.0, 2.0) == pytest.approx(0.5)
    silence.add(2.0, 4.0)
    assert silence.waited(4.0, 4.0) == pytest.approx(0.5)


def test_spans_too_old_to_overlap_are_forgotten_but_stay_counted() -> None:
    """Hours of short cuts keep a bounded list of spans; their waiting is still summed."""
    silence = Silence(attempt_timeout=1.0)
    for second in range(3600):
        silence.add(float(second), second + 0.1)
    assert silence.waited(3600.0, 3600.0) == pytest.approx(360.0)
    assert len(silence._spans) <= 3


def test_a_merged_span_starts_where_its_earliest_attempt_was_sent() -> None:
    """Merging a later-sent span into an earlier-sent one keeps the earlier start covered."""
    silence = Silence(attempt_timeout=10.0)
    silence.add(1.0, 2.0)
    silence.add(0.0, 3.0)  # sent before the first, ended after it: covers 0..3
    silence.add(0.5, 4.0)  # only 3..4 is new
    assert silence.waited(4.0, 4.0) == pytest.approx(4.0)
