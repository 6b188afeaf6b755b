"""The new routes end to end through the unchanged ``mistralai`` SDK against a live factory and
real models: chat classification, the moderation routes, file download and signed URLs, model
update / archive / unarchive, and a job trained on chat-format (``messages``) lines."""

from __future__ import annotations

import httpx
import pytest
from sdk_jobs import train_through_sdk

from moderation_helpers.factory.api.routes.moderations import THRESHOLDS_HEADER
from moderation_helpers.recipe.prepare import text_jsonl_to_chat

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

CONVERSATION = [
    {"role": "user", "content": "What did you think of the speech?"},
    {"role": "assistant", "content": "It was long, but the plan sounded promising."},
    {"role": "user", "content": "You are an idiot and everyone here knows it."},
]


def labels_of(client, model: str) -> set[str]:
    """The model's labels, from the job that trained it (a model card has no targets)."""
    job = client.fine_tuning.jobs.get(job_id=client.models.retrieve(model_id=model).job)
    return {label for target in job.classifier_targets for label in target.labels}


def check_chat_and_moderation(client, model: str) -> None:
    """classify_chat and moderate_chat (and moderate) score every label of the model."""
    labels = labels_of(client, model)
    chat = client.classifiers.classify_chat(
        model=model, input=[{"messages": CONVERSATION}, {"messages": CONVERSATION[:1]}]
    )
    assert len(chat.results) == 2
    for result in chat.results:
        (target,) = result.values()
        assert set(target.scores) == labels
        assert all(0.0 <= s <= 1.0 for s in target.scores.values())
    for answer in (
        client.classifiers.moderate_chat(model=model, inputs=[CONVERSATION, CONVERSATION[:2]]),
        client.classifiers.moderate(model=model, inputs=["you idiot", "thank you"]),
    ):
        assert answer.model == model and len(answer.results) == 2
        for result in answer.results:
            assert set(result.categories) == set(result.category_scores) == labels
            assert result.categories["safe"] is False


def test_new_routes_through_the_sdk_on_the_trained_model(trained_job, factory, prepared_run_dir):
    client, job = trained_job
    model = job.fine_tuned_model
    check_chat_and_moderation(client, model)
    # Trained on texts, the model reads a conversation as its latest turn alone.
    (as_chat,) = client.classifiers.classify_chat(
        model=model, input=[{"messages": CONVERSATION}]
    ).results
    (alone,) = client.classifiers.classify(
        model=model, inputs=[CONVERSATION[-1]["content"]]
    ).results
    for label, score in alone["moderation"].scores.items():
        assert as_chat["moderation"].scores[label] == pytest.approx(score, abs=1e-5)

    # Moderation flags at 0.5 until 04_infer's thresholds are published, then with them.
    from moderation_helpers.recipe.moderate import publish_thresholds

    labels = labels_of(client, model)
    url = f"{factory.url}/v1/moderations"
    body = {"model": model, "input": ["you idiot"]}
    # The session's factory is shared: another test (the conformance run) may have published.
    httpx.delete(f"{factory.url}/v1/fine_tuning/models/{model}/thresholds", timeout=60)
    assert httpx.post(url, json=body, timeout=60).headers[THRESHOLDS_HEADER] == "default-0.5"
    record = {"model": model, "safe_label": "safe", "thresholds": {"moderation": {}}}
    record["thresholds"]["moderation"] = {label: 0.0 for label in labels}
    try:
        assert publish_thresholds(factory.url, record)["source"] == "tuned"
        answer = httpx.post(url, json=body, timeout=60)
        assert answer.headers[THRESHOLDS_HEADER] == "tuned"
        flags = answer.json()["results"][0]["categories"]
        assert flags == {label: label != "safe" for label in labels}  # every score >= 0
    finally:
        httpx.delete(f"{factory.url}/v1/fine_tuning/models/{model}/thresholds", timeout=60)

    # files.download and files.get_signed_url give the bytes as uploaded.
    train_id = job.training_files[0]
    uploaded = (prepared_run_dir / "train.jsonl").read_bytes()
    assert client.files.download(file_id=train_id).read() == uploaded
    signed = client.files.get_signed_url(file_id=train_id, expiry=1).url
    assert httpx.get(signed, timeout=60).content == uploaded

    # Rename, describe, archive: listed as archived, still classifies; then as it was.
    before = client.models.retrieve(model_id=model)
    try:
        updated = client.models.update(model_id=model, name="civil-moderation", description="d")
        assert (updated.name, updated.description) == ("civil-moderation", "d")
        assert client.models.archive(model_id=model).archived is True
        listed = {m.id: m for m in client.models.list().data}
        assert listed[model].archived is True and listed[model].name == "civil-moderation"
        assert client.classifiers.classify(model=model, inputs=["hello"]).results
        assert client.models.unarchive(model_id=model).archived is False
    finally:
        client.models.unarchive(model_id=model)
        client.models.update(model_id=model, name=before.name, description=before.description)
    assert client.models.retrieve(model_id=model).archived is False


def test_a_job_trained_on_chat_lines_classifies_and_moderates_chats(trained_job, prepared_run_dir):
    client, _ = trained_job
    files = {}
    for split in ("train", "validation"):
        chat = text_jsonl_to_chat((prepared_run_dir / f"{split}.jsonl").read_text("utf-8"))
        assert chat.startswith('{"messages":')
        files[split] = (f"chat-{split}.jsonl", chat.encode())
    hyperparameters = {"training_steps": 4, "learning_rate": 1e-4, "seq_len": 64}
    job = train_through_sdk(client, files, hyperparameters, suffix="chat")
    assert job.status == "SUCCESS", job.events[-1].data
    assert job.metadata.data_tokens > 0 and job.checkpoints
    check_chat_and_moderation(client, job.fine_tuned_model)
    client.models.delete(model_id=job.fine_tuned_model)  # the session's cache holds 2 models
