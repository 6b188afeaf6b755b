"""``GET /v1/fine_tuning/models/{id}/folder`` (the model folder through the API) and its client
``recipe.deploy.fetch_model_folder``: errors and token in process, a corrupted or unsafe
download refused with nothing left behind, then the real archive of the trained model, its
checksum and the published thresholds, fetched and moderated with."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import httpx
import pytest
from fastapi.testclient import TestClient

from moderation_helpers.core.flags import FLAG_RULE
from moderation_helpers.core.folder_route import ARCHIVE_SHA256_HEADER, FOLDER_PATH
from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.factory.api.app import create_app
from moderation_helpers.factory.archive import ARCHIVE_FILES
from moderation_helpers.factory.store.db import Store
from moderation_helpers.model.folder import THRESHOLDS_JSON, read_classifier, read_thresholds
from moderation_helpers.model.moderator import Moderator
from moderation_helpers.recipe.deploy import FolderFetchError, fetch_model_folder
from moderation_helpers.recipe.moderate import publish_thresholds

MODEL = "ft:classifier:ministral-3b-latest:0000abcd:20250101:x"


def folder_url(model_id: str) -> str:
    return FOLDER_PATH.format(model_id=model_id)


def test_unknown_model_is_404_and_unfinished_model_409(tmp_path):
    store = Store(tmp_path / "store")
    job_id = store.create_job({"model": "ministral-3b-latest"}, start_requested=True)
    store.add_model(MODEL, job_id, "ministral-3b-latest", [], store.model_dir(job_id))
    with TestClient(create_app(store, run_scheduler=False)) as http:
        unknown = http.get(folder_url("ft:classifier:nope"))
        assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
        unfinished = http.get(folder_url(MODEL))
        assert unfinished.status_code == 409
        assert unfinished.json() == {"detail": unfinished.json()["detail"]}
        assert f"its job {job_id} is QUEUED" in unfinished.json()["detail"]
        assert http.get(folder_url("ft:nope") + "?variant=int8").status_code == 422
    assert not (store.model_dir(job_id) / "export").exists()
    assert list((store.root / "incoming").iterdir()) == []


def test_the_folder_route_requires_the_token_when_configured(tmp_path):
    app = create_app(Store(tmp_path / "store"), token="s3cret-token", run_scheduler=False)
    with TestClient(app) as http:
        assert http.get(folder_url(MODEL)).status_code == 401
        right = http.get(folder_url(MODEL), headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 404


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def serve_bytes(monkeypatch):
    """Make ``httpx.stream`` answer ``body`` with the given headers (a stand-in factory)."""

    def serve(body: bytes, headers: dict[str, str]) -> None:
        transport = httpx.MockTransport(
            lambda request: httpx.Response(200, content=body, headers=headers)
        )
        client = httpx.Client(transport=transport)
        monkeypatch.setattr(
            httpx, "stream", lambda method, url, **kw: client.stream(method, url, **kw)
        )

    return serve


def assert_nothing_left(parent, out):
    assert not out.exists()
    assert [p.name for p in parent.iterdir()] == []  # no temporary archive or folder either


def test_a_corrupted_download_is_refused(serve_bytes, tmp_path):
    body = tar_gz({"classifier.json": b"{}"})
    digest = hashlib.sha256(body).hexdigest()
    corrupted = body[:-20] + bytes(b ^ 0xFF for b in body[-20:])
    serve_bytes(corrupted, {ARCHIVE_SHA256_HEADER: digest})
    out = tmp_path / "deploy" / "model"
    with pytest.raises(FolderFetchError, match="SHA-256 .* corrupted download"):
        fetch_model_folder("http://factory.test", MODEL, out)
    assert_nothing_left(out.parent, out)

    serve_bytes(body, {})  # no checksum announced: refused too
    with pytest.raises(FolderFetchError, match=f"no {ARCHIVE_SHA256_HEADER} header"):
        fetch_model_folder("http://factory.test", MODEL, out)
    assert_nothing_left(out.parent, out)


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "sub/model.onnx"])
def test_an_archive_with_paths_is_refused(serve_bytes, tmp_path, name):
    body = tar_gz({"classifier.json": b"{}", name: b"x"})
    serve_bytes(body, {ARCHIVE_SHA256_HEADER: hashlib.sha256(body).hexdigest()})
    out = tmp_path / "deploy" / "model"
    with pytest.raises(FolderFetchError, match="unexpected archive member"):
        fetch_model_folder("http://factory.test", MODEL, out)
    assert_nothing_left(out.parent, out)
    assert not (tmp_path / "deploy" / "evil.txt").exists()


# The trained model of the session's factory (slow: the suite trains it once).


@pytest.fixture
def published(factory, trained_job):
    """Thresholds (0.3 for every label) published for the model; the previous ones after."""
    _, job = trained_job
    url = f"{factory.url}/v1/fine_tuning/models/{job.fine_tuned_model}/thresholds"
    before = httpx.get(url).json()
    targets = {t.name: dict.fromkeys(t.labels, 0.3) for t in job.classifier_targets}
    record = {
        "model": job.fine_tuned_model,
        "safe_label": "safe",
        "thresholds": targets,
        "graph": "fp32",
    }
    publish_thresholds(factory.url, record)
    yield record
    if before["source"] == "tuned":
        publish_thresholds(
            factory.url,
            {**before, "model": job.fine_tuned_model, "graph": before["tuned_graph"]},
        )
    else:
        httpx.delete(url).raise_for_status()


@pytest.mark.slow
@pytest.mark.needs_data
def test_the_archive_holds_the_folder_and_the_published_thresholds(
    factory, trained_job, published, tmp_path
):
    _, job = trained_job
    response = httpx.get(factory.url + folder_url(job.fine_tuned_model), timeout=900)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers[ARCHIVE_SHA256_HEADER] == hashlib.sha256(response.content).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == sorted([*ARCHIVE_FILES, THRESHOLDS_JSON])
        tar.extractall(tmp_path / "folder", filter="data")
    thresholds = read_thresholds(tmp_path / "folder")
    assert thresholds == {**published, "rule": FLAG_RULE}
    assert read_classifier(tmp_path / "folder")["model_id"] == job.fine_tuned_model
    assert list((factory.store / "incoming").iterdir()) == []  # the temporary archive is gone

    httpx.delete(f"{factory.url}/v1/fine_tuning/models/{job.fine_tuned_model}/thresholds")
    again = httpx.get(factory.url + folder_url(job.fine_tuned_model), timeout=900)
    with tarfile.open(fileobj=io.BytesIO(again.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == sorted(ARCHIVE_FILES)  # none published: none sent


@pytest.mark.slow
@pytest.mark.needs_data
def test_a_fetched_folder_moderates(factory, trained_job, published, prepared_run_dir, tmp_path):
    _, job = trained_job
    out = fetch_model_folder(factory.url, job.fine_tuned_model, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == sorted([*ARCHIVE_FILES, THRESHOLDS_JSON])
    texts = [ex["text"] for ex in read_jsonl(prepared_run_dir / "test.jsonl")][:20]
    moderator = Moderator.load(out, variant="int8")
    decisions = moderator.moderate(texts)
    assert len(decisions) == len(texts)
    assert json.loads((out / THRESHOLDS_JSON).read_text())["thresholds"] == published["thresholds"]
    with pytest.raises(FileExistsError, match="not empty"):
        fetch_model_folder(factory.url, job.fine_tuned_model, out)
