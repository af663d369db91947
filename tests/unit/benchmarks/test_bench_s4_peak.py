"""S4's RSS at the peak: which sample stands for "N requests in flight"."""

from __future__ import annotations

from bench import report
from bench.scenarios import MemorySample, peak_sample

MB = 2**20

#: 1,500 requests filling a gateway at a 10 s signer, then answers flowing while wrk sends
#: the next ones: the count is back at 1,500 once, with what answering holds on top.
SAMPLES = [
    MemorySample(inside=600, rss=120 * MB, answered=0),
    MemorySample(inside=1500, rss=155 * MB, answered=0),
    MemorySample(inside=1500, rss=155 * MB + 4096, answered=0),
    MemorySample(inside=1490, rss=158 * MB, answered=40),
    MemorySample(inside=1500, rss=159 * MB, answered=300),
]


def test_all_at_the_signer_is_read_before_the_signer_answers() -> None:
    """The latest sample at the peak while none was answered, not one once answers flow."""
    assert peak_sample(SAMPLES, 80 * MB, before_first_answer=True) == (1500, 155 * MB + 4096)


def test_a_run_with_answers_in_it_takes_the_latest_sample_at_its_peak() -> None:
    """The 10,000 run, where answers flow before the peak: any sample may hold it."""
    assert peak_sample(SAMPLES, 80 * MB, before_first_answer=False) == (1500, 159 * MB)


def test_no_sample_before_the_first_answer_is_the_idle_rss_at_no_requests() -> None:
    """Nothing measured in time reads as 0 in flight, which the report shows, not a figure."""
    answered_at_once = [MemorySample(inside=1500, rss=159 * MB, answered=1)]
    assert peak_sample(answered_at_once, 80 * MB, before_first_answer=True) == (0, 80 * MB)


def test_a_run_with_nothing_in_flight_has_no_figure_and_misses_the_target() -> None:
    """No KB figure is 0 KB: the S4 memory verdict is missed, and the report still renders."""
    results = {
        "S4": {
            "kb_per_in_flight": 48.0,
            "errors": 0,
            "peak_in_flight": 10_000,
            report.ALL_AT_SIGNER: {"kb_per_in_flight": None, "bytes_per_in_flight": None},
        }
    }
    verdicts = report.verdicts(results)
    assert verdicts["S4"]["le_50kb"] is False
    [row] = [r for r in report._verdict_rows(verdicts, {}) if "50 KB" in r]
    assert row.endswith("every request at the signer: not measured | **NO** |"), row
