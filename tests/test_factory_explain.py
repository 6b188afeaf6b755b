"""``POST /v1/moderations/explain`` (a local extension): ``/v1/moderations``' answer for the
same body, with the spans behind each flag, which are the ones ``Moderator.explain`` gives on
the model's folder fetched from the factory (same graph, same published thresholds)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.factory.serving.scoring import GRAPH_HEADER
from moderation_helpers.model.moderator import Moderator
from moderation_helpers.recipe.deploy import fetch_model_folder
from moderation_helpers.recipe.moderate import publish_thresholds

EXTRA = ["you are an idiot and a liar", "what a stupid, ugly, pathetic comment", "thanks, nice"]


def split_thresholds(job, results: list[dict]) -> dict[str, dict[str, float]]:
    """Per label, the midpoint of the widest gap between the texts' scores: some texts flag,
    and no score sits near its threshold (fp32 graphs may differ by 1e-4 from torch)."""
    n_targets = len(job.classifier_targets)
    out = {}
    for t in job.classifier_targets:
        out[t.name] = {}
        for label in t.labels:
            name = label if n_targets == 1 else f"{t.name}/{label}"
            scores = np.sort([r["category_scores"][name] for r in results])
            k = int(np.argmax(np.diff(scores)))
            out[t.name][label] = float((scores[k] + scores[k + 1]) / 2)
    return out


def same_spans(got: dict, expected: dict) -> bool:
    if got.keys() != expected.keys():
        return False
    for name, spans in got.items():
        want = expected[name]
        if [(s["start"], s["end"]) for s in spans] != [(s["start"], s["end"]) for s in want]:
            return False
        if not np.allclose([s["weight"] for s in spans], [s["weight"] for s in want], atol=1e-3):
            return False
    return True


@pytest.mark.slow
@pytest.mark.needs_data
def test_the_explain_route_answers_moderations_with_the_moderators_spans(
    factory, trained_job, prepared_run_dir, tmp_path
):
    _, job = trained_job
    model = job.fine_tuned_model
    texts = [ex["text"] for ex in read_jsonl(prepared_run_dir / "test.jsonl")][:12] + EXTRA
    body = {"model": model, "input": texts}
    url = f"{factory.url}/v1/fine_tuning/models/{model}/thresholds"
    before = httpx.get(url).json()
    first = httpx.post(f"{factory.url}/v1/moderations", json=body, timeout=300).json()
    thresholds = split_thresholds(job, first["results"])
    record = {"model": model, "safe_label": "safe", "thresholds": thresholds}
    publish_thresholds(factory.url, record)
    try:
        moderated = httpx.post(f"{factory.url}/v1/moderations", json=body, timeout=300)
        explained = httpx.post(f"{factory.url}/v1/moderations/explain", json=body, timeout=300)
        out = fetch_model_folder(factory.url, model, tmp_path / "model")
    finally:
        if before["source"] == "tuned":
            publish_thresholds(factory.url, {**before, "model": model})
        else:
            httpx.delete(url).raise_for_status()
    assert explained.status_code == 200, explained.text
    answer = explained.json()
    assert answer["model"] == model and answer["id"].startswith("mod-")
    assert explained.headers["X-Moderation-Thresholds"] == "tuned"
    graph = explained.headers[GRAPH_HEADER]
    assert graph == moderated.headers[GRAPH_HEADER]
    results = answer["results"]
    assert len(results) == len(texts)
    flagged_any = False
    for text, got, plain in zip(texts, results, moderated.json()["results"], strict=True):
        assert got["categories"] == plain["categories"]
        assert got["category_scores"] == pytest.approx(plain["category_scores"], abs=1e-6)
        flagged = [name for name, hit in got["categories"].items() if hit]
        assert sorted(got["spans"]) == sorted(flagged)
        flagged_any |= bool(flagged)
        for spans in got["spans"].values():
            for span in spans:
                assert 0 <= span["start"] < span["end"] <= len(text)
                words = text[span["start"] : span["end"]]
                assert words == words.strip()
                assert 0 < span["weight"] <= 1
    assert flagged_any
    # The fetched folder holds the published thresholds: the Moderator flags what the route did.
    expected = Moderator.load(out, variant=graph).explain(texts)
    for got, want in zip(results, expected, strict=True):
        assert same_spans(got["spans"], want), (got["spans"], want)
