"""The chat, moderation, file-content and model-management routes in process (TestClient),
driven through the real SDK: a stand-in scorer replaces the model (the real one runs in
test_factory_chat_e2e.py), so these check the routes' shapes, errors and flag rules."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from mistralai.client import Mistral
from mistralai.client import errors as sdk_errors

from moderation_helpers.factory.api.app import create_app
from moderation_helpers.factory.api.routes import classifications, files, moderations
from moderation_helpers.factory.store.db import Store

MODEL = "ft:classifier:ministral-3b-latest:abcd1234:20261126:0000aaaa"
TARGETS = [
    {
        "name": "moderation",
        "labels": ["insult", "safe", "threat"],
        "weight": 1.0,
        "loss_function": "multi_class",
    }
]
CONVERSATION = [
    {"role": "system", "content": "A forum."},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": [{"type": "text", "text": "hi, how can I help?"}]},
    {"role": "user", "content": "you idiot"},
]


def fake_scores(models, record, texts):
    """Scores from the text: 'idiot' is an insult (0.9), 'hurt' a threat (0.6)."""
    seen.append(list(texts))
    return [
        {
            t["name"]: {
                "insult": 0.9 if "idiot" in text else 0.1,
                "threat": 0.6 if "hurt" in text else 0.05,
                "safe": 0.7,
            }
            for t in record["targets"]
        }
        for text in texts
    ]


async def fake_scores_async(models, record, texts, **_):
    return fake_scores(models, record, texts)


seen: list[list[str]] = []


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "store")
    (tmp_path / "model").mkdir()
    store.add_model(MODEL, str(uuid.uuid4()), "ministral-3b-latest", TARGETS, tmp_path / "model")
    return store


@pytest.fixture
def http(store, monkeypatch):
    for module in (classifications, moderations):
        # The routes are async and await their batch (factory/scoring.py).
        monkeypatch.setattr(module, "score_texts_async", fake_scores_async)
    seen.clear()
    with TestClient(create_app(store, run_scheduler=False)) as client:
        yield client


@pytest.fixture
def sdk(http) -> Mistral:
    return Mistral(api_key="unused", server_url="http://testserver", client=http)


def test_classify_chat_renders_each_conversation_once_in_the_classify_shape(sdk):
    one = sdk.classifiers.classify_chat(model=MODEL, input={"messages": CONVERSATION})
    assert len(one.results) == 1
    assert one.results[0]["moderation"].scores["insult"] == pytest.approx(0.9)
    assert seen[-1] == [
        "system: A forum.\nuser: hello\nassistant: hi, how can I help?\nuser: you idiot"
    ]
    many = sdk.classifiers.classify_chat(
        model=MODEL,
        input=[{"messages": CONVERSATION[:2]}, {"messages": [CONVERSATION[1]]}],
    )
    assert [r["moderation"].scores["insult"] for r in many.results] == [0.1, 0.1]
    assert seen[-1] == ["system: A forum.\nuser: hello", "user: hello"]


@pytest.mark.parametrize(
    ("body_input", "field", "words"),
    [
        ({"messages": [{"role": "bot", "content": "x"}]}, "input.messages[0].role", "unknown"),
        ({"messages": []}, "input.messages", "empty"),
        ({"messages": "hi"}, "input.messages", "list"),
        (
            [{"messages": CONVERSATION}, {"messages": [{"role": "user", "content": 3}]}],
            "input[1].messages[0].content",
            "string",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]},
            "input.messages[0].content[0]",
            "text chunks",
        ),
        ([], "input", "empty list"),
    ],
)
def test_a_bad_classify_chat_body_is_a_422_naming_the_field(http, body_input, field, words):
    response = http.post("/v1/chat/classifications", json={"model": MODEL, "input": body_input})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [d["loc"] for d in detail][0] == ["body", field]
    assert words in detail[0]["msg"]


def test_a_bad_classify_chat_body_reaches_the_sdk_as_a_validation_error(sdk):
    with pytest.raises(sdk_errors.HTTPValidationError) as info:
        sdk.classifiers.classify_chat(model=MODEL, input={"messages": []})
    assert "input.messages" in str(info.value.data.detail)


def test_moderate_flags_at_0_5_until_thresholds_are_published(sdk, http):
    texts = ["you idiot", "they will get hurt", "nice"]
    first = sdk.classifiers.moderate(model=MODEL, inputs=texts)
    assert first.model == MODEL and len(first.results) == 3
    assert first.results[0].categories == {"insult": True, "safe": False, "threat": False}
    assert first.results[1].categories["threat"] is True  # 0.6 >= 0.5
    assert first.results[2].category_scores == {"insult": 0.1, "safe": 0.7, "threat": 0.05}
    assert not any(r.categories["safe"] for r in first.results), "safe is never a flag"
    raw = http.post("/v1/moderations", json={"model": MODEL, "input": "x"})
    assert raw.headers[moderations.THRESHOLDS_HEADER] == "default-0.5"

    tuned = {"model": MODEL, "safe_label": "safe", "thresholds": {"moderation": {"threat": 0.8}}}
    put = http.put(f"/v1/fine_tuning/models/{MODEL}/thresholds", json=tuned)
    assert put.status_code == 200, put.text
    assert put.json()["thresholds"]["moderation"] == {"insult": 0.5, "safe": 0.5, "threat": 0.8}
    after = sdk.classifiers.moderate(model=MODEL, inputs=texts)
    assert after.results[1].categories["threat"] is False  # 0.6 < 0.8 now
    assert after.results[0].categories["insult"] is True
    raw = http.post("/v1/moderations", json={"model": MODEL, "input": "x"})
    assert raw.headers[moderations.THRESHOLDS_HEADER] == "tuned"
    assert http.get(f"/v1/fine_tuning/models/{MODEL}/thresholds").json()["source"] == "tuned"
    assert http.delete(f"/v1/fine_tuning/models/{MODEL}/thresholds").json()["source"] == (
        "default-0.5"
    )
    assert sdk.classifiers.moderate(model=MODEL, inputs=texts).results[1].categories["threat"]


def test_moderate_chat_takes_one_conversation_or_several(sdk):
    one = sdk.classifiers.moderate_chat(model=MODEL, inputs=CONVERSATION)
    assert len(one.results) == 1 and one.results[0].categories["insult"] is True
    two = sdk.classifiers.moderate_chat(model=MODEL, inputs=[CONVERSATION[:2], CONVERSATION])
    assert [r.categories["insult"] for r in two.results] == [False, True]


def test_several_targets_flatten_to_target_slash_label(store, http):
    other = "ft:classifier:x:abcd1234:20261126:0000bbbb"
    targets = [*TARGETS, {**TARGETS[0], "name": "second"}]
    store.add_model(other, str(uuid.uuid4()), "x", targets, store.root / "models")
    result = http.post("/v1/moderations", json={"model": other, "input": ["you idiot"]}).json()
    assert set(result["results"][0]["categories"]) == {
        f"{t}/{label}" for t in ("moderation", "second") for label in ("insult", "safe", "threat")
    }


def test_unknown_moderation_model_says_the_general_one_is_mistral_only(http):
    for path, body_input in (("/v1/moderations", "hi"), ("/v1/chat/moderations", CONVERSATION)):
        response = http.post(path, json={"model": "mistral-moderation-latest", "input": body_input})
        assert response.status_code == 404
        assert "exists only on the Mistral API" in response.json()["detail"]


def test_thresholds_must_name_the_models_labels_and_be_scores(http):
    url = f"/v1/fine_tuning/models/{MODEL}/thresholds"
    for bad, loc in (
        ({"nope": {"insult": 0.5}}, ["body", "thresholds", "nope"]),
        ({"moderation": {"spam": 0.5}}, ["body", "thresholds", "moderation", "spam"]),
        ({"moderation": {"insult": 1.5}}, ["body", "thresholds", "moderation", "insult"]),
    ):
        response = http.put(url, json={"thresholds": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == loc


def test_the_thresholds_keep_the_graph_they_were_tuned_on(http):
    url = f"/v1/fine_tuning/models/{MODEL}/thresholds"
    tuned = {"thresholds": {"moderation": {"threat": 0.8}}}
    assert http.put(url, json=tuned).json()["tuned_graph"] is None  # an older document
    assert http.put(url, json={**tuned, "graph": "int8"}).json()["tuned_graph"] == "int8"
    assert http.get(url).json()["tuned_graph"] == "int8"
    bad = http.put(url, json={**tuned, "graph": "fp16"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "graph"]
    assert http.get(url).json()["tuned_graph"] == "int8", "a refused document changes nothing"
    assert http.delete(url).json()["tuned_graph"] is None


def test_update_archive_unarchive_through_the_sdk(sdk):
    updated = sdk.models.update(model_id=MODEL, name="team-moderation", description="ours")
    assert (updated.name, updated.description) == ("team-moderation", "ours")
    assert updated.model_type == "classifier"
    assert sdk.models.archive(model_id=MODEL).archived is True
    listed = {m.id: m for m in sdk.models.list().data}
    assert listed[MODEL].archived is True and listed[MODEL].name == "team-moderation"
    # Archived models still classify, as on the API.
    assert sdk.classifiers.classify(model=MODEL, inputs=["hi"]).results
    assert sdk.models.unarchive(model_id=MODEL).archived is False
    assert sdk.models.retrieve(model_id=MODEL).archived is False
    with pytest.raises(sdk_errors.SDKError) as info:
        sdk.models.archive(model_id="ft:classifier:unknown")
    assert info.value.status_code == 404


def test_download_and_signed_url_give_the_bytes_as_uploaded(tmp_path):
    store = Store(tmp_path / "store")
    with TestClient(create_app(store, token="s3cret", run_scheduler=False)) as http:
        sdk = Mistral(api_key="s3cret", server_url="http://testserver", client=http)
        content = b'{"text": "caf\xc3\xa9", "labels": {"m": "x"}}\r\n'
        file_id = sdk.files.upload(file={"file_name": "t.jsonl", "content": content}).id
        assert sdk.files.download(file_id=file_id).read() == content

        url = sdk.files.get_signed_url(file_id=file_id, expiry=1).url
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert int(query["expires"][0]) - time.time() == pytest.approx(3600, abs=60)
        path = f"{parts.path}?{parts.query}"
        # No token needed: the signature is the credential.
        assert http.get(path, headers={"Authorization": ""}).content == content
        tampered = path.replace(query["expires"][0], str(int(query["expires"][0]) + 99))
        assert http.get(tampered).status_code == 403
        other = http.get(path.replace(file_id, str(uuid.uuid4())))
        assert other.status_code == 403
        assert http.get(f"/v1/files/{file_id}/content").status_code == 401  # token still needed
        # An expired URL: rightly signed, for a time already past.
        past = int(time.time()) - 1
        signature = files._signature(store, file_id, past)
        expired = http.get(parts.path, params={"expires": past, "signature": signature})
        assert expired.status_code == 403 and "expired" in expired.json()["detail"]


def test_paging_is_bounded_and_past_the_end_is_empty(http):
    huge = http.get("/v1/files", params={"page": 1537140760504966, "page_size": 349307})
    assert huge.status_code == 422
    assert {d["loc"][-1] for d in huge.json()["detail"]} == {"page", "page_size"}
    assert http.get("/v1/fine_tuning/jobs", params={"page": -1}).status_code == 422
    assert http.get("/v1/files", params={"page": 999_999, "page_size": 1000}).json()["data"] == []
    assert http.get("/v1/files", params={"mimetypes": "no mime"}).status_code == 422
    listed = http.get("/v1/files", params={"mimetypes": ["application/jsonl"], "purpose": "ocr"})
    assert listed.json() == {"data": [], "object": "list", "total": 0}


def test_unimplemented_paths_say_so(http):
    response = http.post("/v1/chat/completions", json={})
    assert response.status_code == 404
    assert "not implemented by the local Classifier Factory" in response.json()["detail"]
