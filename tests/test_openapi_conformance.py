"""The factory against Mistral's own OpenAPI spec, with schemathesis (property-based).

A live factory, requiring a token as the spec's Bearer scheme says, holds an uploaded file, a
finished (SUCCESS) job and its trained model, copied from the session's ``trained_job`` into a
store of its own. schemathesis generates requests (valid and invalid) for every route the
factory implements, from the spec's ``openapi.yaml``; half of the generated path ids and body
``model`` names are replaced by the real ones, so that the success paths run too (the model
really classifies), not only the 404s. Deletions keep generated ids: deleting the real file or
model would turn the rest of the run into 404s. Since generated cases reach a success path
only by chance, one explicit request per route that has a success answer checks that answer
against the spec too.

Checks kept: no server error (5xx), every response body valid against the spec's schema for its
status, content types and headers, invalid requests rejected, a wrong or missing key rejected
(``ignored_auth``), 405 with a correct ``Allow`` for methods a path does not have. Excluded:

* ``status_code_conformance``: the spec lists only 200 (and 422) for most routes, while 404
  (unknown id), 409 (a status change the job does not allow), 401 (no or wrong key), 400 (a
  body that is not JSON or multipart at all), 405 (a method the path lacks) and 422 (a bounded
  paging parameter, an unknown query parameter) are the right answers there. It is replaced by
  :func:`undocumented_status_is_a_clear_error`: an undocumented status must be one of those,
  with a JSON ``detail`` saying why (bytes that are not valid HTTP at all, such as a generated
  ``Content-Length`` header that disagrees with the body, get uvicorn's plain-text 400 before
  they reach the app).
* ``positive_data_acceptance``: it flags any 4xx to a request the spec allows, i.e. the same
  right answers (an unknown id is schema-valid) and the deliberate 422s (an image chunk cannot
  be classified by a text encoder; an empty conversation has nothing to classify).
* ``use_after_free`` / ``ensure_resource_availability``: stateful checks for chains of calls;
  the cases here are independent (the spec has no links between these routes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    ensure_resource_availability,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)
from schemathesis.core.parameters import ParameterLocation

from tests.conftest import SHARED_REFERENCE

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

SPEC = SHARED_REFERENCE / "openapi.yaml"
# Every route the factory implements (the spec describes many more of Mistral's API).
ROUTES = (
    r"^/v1/(files|fine_tuning/jobs|fine_tuning/models|models|classifications|"
    r"chat/classifications|moderations|chat/moderations)(/|$)"
)
MAX_EXAMPLES = 25  # per operation; classify calls run the model
EXCLUDED = [status_code_conformance, positive_data_acceptance, use_after_free]
EXCLUDED.append(ensure_resource_availability)
RIGHT_ANSWERS = {400, 401, 404, 405, 409, 422}
# uvicorn's plain-text answer to bytes that are not a valid HTTP request; the app never sees them.
HTTP_PARSER_REJECTION = "Invalid HTTP request received."
# The spec asks for a Bearer key: the factory under test requires one, and schemathesis's
# ignored_auth check verifies that a wrong or missing one gets a 401.
TOKEN = "conformance-test-token"
REAL_IDS: dict[str, str] = {}
CHAT = [
    {"role": "user", "content": "What did you think of the article?"},
    {"role": "assistant", "content": [{"type": "text", "text": "It was long."}]},
    {"role": "user", "content": "You are an idiot."},
]
KEEP_GENERATED_IDS = {"DELETE /v1/files/{file_id}", "DELETE /v1/models/{model_id}"}
EXPECTED_OPERATIONS = 21  # the spec's operations under ROUTES
STATS: dict[str, dict[str, dict[int, int]]] = {}  # operation -> status -> cases


@pytest.fixture(scope="module")
def conformance_factory(trained_job, factory, tmp_path_factory):
    """A factory of its own holding a file, a SUCCESS job and its model (copied, not trained)."""
    from moderation_helpers.factory.process import start_factory, stop_factory
    from moderation_helpers.factory.store.db import Store

    _, job = trained_job
    source = Store(factory.store)
    store = Store(tmp_path_factory.mktemp("conformance-store"))
    done = source.get_job(job.id)
    model = source.get_model(job.fine_tuned_model)
    train = source.get_file(done["doc"]["training_files"][0]["file_id"])
    file_id = store.add_file(train["filename"], Path(train["path"]).read_bytes(), "fine-tune")["id"]
    doc = {**done["doc"], "training_files": [{"file_id": file_id, "weight": 1.0}]}
    doc["validation_files"] = []
    job_id = store.create_job(doc, start_requested=True)
    with store.edit_job(job_id) as edit:
        edit.validated = True
        for status in ("VALIDATING", "VALIDATED", "QUEUED", "RUNNING", "SUCCESS"):
            edit.set_status(status)
    for c in done["checkpoints"]:
        store.add_checkpoint(job_id, c["step_number"], c["train_loss"], c["valid_loss"])
    shutil.copytree(model["path"], store.model_dir(job_id))
    store.add_model(model["id"], job_id, model["root"], model["targets"], store.model_dir(job_id))
    REAL_IDS.update(file_id=file_id, job_id=job_id, model_id=model["id"])
    handle = start_factory(store.root, port=0, token=TOKEN)
    try:
        yield handle
    finally:
        stop_factory(handle)


@pytest.fixture(scope="module")
def api_schema():
    if not SPEC.is_file():
        pytest.skip(f"Mistral's openapi.yaml not found at {SPEC} (see DESIGN.md: ../shared)")
    loaded = schemathesis.openapi.from_path(SPEC)

    @loaded.hook
    def flatmap_path_parameters(context, path_parameters):
        # Half of the ids are the real ones, except to delete (see the module's docstring).
        if not path_parameters or context.operation.label in KEEP_GENERATED_IDS:
            return st.just(path_parameters)
        for name in ("file_id", "job_id", "model_id"):
            if name in path_parameters:
                real = {**path_parameters, name: REAL_IDS[name]}
                return st.sampled_from([path_parameters, real])
        return st.just(path_parameters)

    @loaded.hook
    def flatmap_body(context, body):
        # Classification requests name the real model half of the time. (Only the model: a
        # whole valid body swapped into a case generated invalid on purpose would be accepted.)
        if isinstance(body, dict) and isinstance(body.get("model"), str) and "input" in body:
            return st.sampled_from([body, {**body, "model": "__real__"}]).map(_real_model)
        return st.just(body)

    return loaded


def _real_model(body: dict) -> dict:
    return {**body, "model": REAL_IDS["model_id"]} if body["model"] == "__real__" else body


schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex=ROUTES)


def undocumented_status_is_a_clear_error(ctx, response, case):
    """An answer the spec does not list must be a right answer it omits, saying why."""
    documented = set(case.operation.definition.raw.get("responses", {}))
    status = response.status_code
    if str(status) in documented:
        return None
    assert status in RIGHT_ANSWERS, f"undocumented status {status}: {response.text[:300]}"
    if status == 400 and response.text == HTTP_PARSER_REJECTION:
        return None  # not valid HTTP (a generated Content-Length, say): refused before the app
    assert json.loads(response.content).get("detail"), f"{status} without a detail"
    return None


def auth_headers(case) -> dict[str, str]:
    """The key, unless schemathesis made the headers invalid on purpose (then it expects 401)."""
    meta = case.meta
    if meta is not None and meta.generation.mode == GenerationMode.NEGATIVE:
        info = meta.components.get(ParameterLocation.HEADER)
        if info is not None and info.mode == GenerationMode.NEGATIVE:
            return {}
    return {"Authorization": f"Bearer {TOKEN}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_factory_conforms_to_mistrals_openapi_spec(case, conformance_factory):
    headers = auth_headers(case)
    response = case.call(base_url=conformance_factory.url, headers=headers, timeout=60)
    per_status = STATS.setdefault(case.operation.label, {})
    per_status[response.status_code] = per_status.get(response.status_code, 0) + 1
    case.validate_response(
        response,
        headers=headers,
        excluded_checks=EXCLUDED,
        additional_checks=[undocumented_status_is_a_clear_error],
    )


def test_zz_the_run_covered_every_route(conformance_factory):
    """What the run above covered (printed: run with -s)."""
    if not STATS:
        pytest.skip("the schemathesis test did not run")
    cases = sum(n for per_status in STATS.values() for n in per_status.values())
    print(f"\nschemathesis: {cases} generated cases over {len(STATS)} operations")
    for operation, per_status in sorted(STATS.items()):
        print(f"  {operation}: {dict(sorted(per_status.items()))}")
    assert len(STATS) == EXPECTED_OPERATIONS
    assert all(status < 500 for per_status in STATS.values() for status in per_status)


def success_cases(schema) -> list:
    """One request per route that must succeed, with the real ids (the generated ones reach
    the success paths only by chance)."""
    model, text = {"model": REAL_IDS["model_id"]}, {"input": ["you idiot", "thanks"]}
    specs = [
        ("/v1/files", "GET", {}, None),
        ("/v1/files/{file_id}", "GET", {"file_id": REAL_IDS["file_id"]}, None),
        ("/v1/files/{file_id}/content", "GET", {"file_id": REAL_IDS["file_id"]}, None),
        ("/v1/files/{file_id}/url", "GET", {"file_id": REAL_IDS["file_id"]}, None),
        ("/v1/fine_tuning/jobs", "GET", {}, None),
        ("/v1/fine_tuning/jobs/{job_id}", "GET", {"job_id": REAL_IDS["job_id"]}, None),
        ("/v1/models", "GET", {}, None),
        ("/v1/models/{model_id}", "GET", {"model_id": REAL_IDS["model_id"]}, None),
        (
            "/v1/fine_tuning/models/{model_id}",
            "PATCH",
            {"model_id": REAL_IDS["model_id"]},
            {"name": "conformance", "description": None},
        ),
        (
            "/v1/fine_tuning/models/{model_id}/archive",
            "POST",
            {"model_id": REAL_IDS["model_id"]},
            None,
        ),
        (
            "/v1/fine_tuning/models/{model_id}/archive",
            "DELETE",
            {"model_id": REAL_IDS["model_id"]},
            None,
        ),
        ("/v1/classifications", "POST", {}, {**model, **text}),
        ("/v1/moderations", "POST", {}, {**model, **text}),
        ("/v1/chat/classifications", "POST", {}, {**model, "input": [{"messages": CHAT}]}),
        ("/v1/chat/moderations", "POST", {}, {**model, "input": [CHAT, CHAT[:1]]}),
    ]
    return [
        schema[path][method].Case(
            path_parameters=params or None, **({"body": body} if body else {})
        )
        for path, method, params, body in specs
    ]


def test_zz_every_route_answers_its_success_shape(api_schema, conformance_factory):
    """The success answer of every route that has one, validated against the spec's schema."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for case in success_cases(api_schema):
        response = case.call(base_url=conformance_factory.url, headers=headers, timeout=60)
        label = case.operation.label
        assert response.status_code == 200, f"{label}: {response.status_code} {response.text}"
        case.validate_response(
            response, checks=[not_a_server_error, response_schema_conformance], headers=headers
        )
    assert httpx.get(f"{conformance_factory.url}/v1/models", timeout=30).status_code == 401
