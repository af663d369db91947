"""Read the gateway's /metrics the way Prometheus does, for assertions on samples."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """Every sample of one /metrics answer, by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    content_type: str

    @classmethod
    def of(cls, text: str, content_type: str = "") -> Scrape:
        """The samples of the exposition `text`."""
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return cls(samples, content_type)

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly `labels` (0 when absent: counters start there)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum of `name` over every label set that includes `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample of `name` present, by its labels (an absent one is not 0 here)."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def label_values(self, name: str, label: str) -> set[str]:
        """Every value `label` takes on samples of `name`."""
        return {dict(ls)[label] for (n, ls), _ in self.samples.items() if n == name}


async def scrape(client: httpx.AsyncClient) -> Scrape:
    """GET /metrics and parse it (fails the test unless it answers 200)."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape.of(response.text, response.headers["content-type"])
