"""The factory against Mistral's own OpenAPI spec, with schemathesis (property-based).

A live factory holds an uploaded file, a finished (SUCCESS) job and its trained model, copied
from the session's ``trained_job`` into a store of its own (so that generated DELETE and
archive calls cannot disturb other tests). schemathesis generates requests for every route the
factory implements, from the spec's ``openapi.yaml``; half of the generated path ids are
replaced by the real ones, so that the success paths are exercised, not only the 404s.

Checks kept: no server error (5xx), every response body valid against the spec's schema for
its status, the documented content type and headers. Checks excluded, and why:

* ``status_code_conformance``: the spec lists only 200 (and 422) for most routes, but 404 for
  an unknown id, 409 for a status change the job does not allow, 422 for a bounded paging
  parameter and 401 without a token are the right answers. It is replaced by
  :func:`undocumented_status_is_a_clear_error`: an undocumented status must be one of those,
  with a JSON ``detail`` saying why.
* ``positive_data_acceptance``: it flags any 4xx to a request the spec allows, i.e. the same
  right answers (an unknown id is schema-valid), and the deliberate 422s (a conversation with
  an image chunk cannot be classified by a text encoder; an empty conversation has nothing to
  classify).
* 401 is among the right answers for the token check itself (``ignored_auth`` sends a wrong
  key on purpose and expects it).
* ``use_after_free`` / ``ensure_resource_availability``: stateful checks for chained calls; the
  cases here are independent (no links in the spec between these routes).
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
from schemathesis.checks import (
    ensure_resource_availability,
    positive_data_acceptance,
    status_code_conformance,
    use_after_free,
)

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
RIGHT_ANSWERS = {401, 404, 409, 422}
# The spec asks for a Bearer key: the factory under test requires one, and schemathesis's
# ignored_auth check verifies that a wrong or missing one gets a 401.
TOKEN = "conformance-test-token"
REAL_IDS: dict[str, str] = {}
STATS = {"cases": 0, "operations": set(), "statuses": {}}


@pytest.fixture(scope="module")
def conformance_factory(trained_job, factory, tmp_path_factory):
    """A factory of its own holding a file, a SUCCESS job and its model (copied, not trained)."""
    from moderation_helpers.factory.process import start_factory, stop_factory
    from moderation_helpers.factory.store import Store

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
    loaded = schemathesis.openapi.from_path(SPEC).include(path_regex=ROUTES)

    @loaded.hook
    def flatmap_path_parameters(context, path_parameters):
        # Half of the ids are the real ones: the success paths get tested too.
        for name in ("file_id", "job_id", "model_id"):
            if path_parameters and name in path_parameters:
                choice = st.sampled_from([path_parameters[name], "__real__"])
                return choice.map(
                    lambda v, n=name: {**path_parameters, n: REAL_IDS[n] if v == "__real__" else v}
                )
        return st.just(path_parameters)

    @loaded.hook
    def flatmap_body(context, body):
        # Requests that name a model: the real one, half of the time.
        if isinstance(body, dict) and "model" in body:
            return st.sampled_from([body, {**body, "model": "__real__"}]).map(_real_model)
        return st.just(body)

    return loaded


def _real_model(body: dict) -> dict:
    return {**body, "model": REAL_IDS["model_id"]} if body["model"] == "__real__" else body


schema = schemathesis.pytest.from_fixture("api_schema")


def undocumented_status_is_a_clear_error(ctx, response, case):
    """An answer the spec does not list must be a right answer it omits, saying why."""
    documented = set(case.operation.definition.raw.get("responses", {}))
    status = response.status_code
    if str(status) in documented:
        return None
    assert status in RIGHT_ANSWERS, f"undocumented status {status}: {response.text[:300]}"
    assert json.loads(response.content).get("detail"), f"{status} without a detail"
    return None


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_factory_conforms_to_mistrals_openapi_spec(case, conformance_factory):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = case.call(base_url=conformance_factory.url, headers=headers, timeout=60)
    STATS["cases"] += 1
    STATS["operations"].add(f"{case.method} {case.path}")
    STATS["statuses"][response.status_code] = STATS["statuses"].get(response.status_code, 0) + 1
    case.validate_response(
        response,
        headers=headers,
        excluded_checks=EXCLUDED,
        additional_checks=[undocumented_status_is_a_clear_error],
    )


def test_zz_report_conformance_coverage(conformance_factory):
    """Prints what the conformance run covered (run with -s to see it)."""
    print(
        f"\nschemathesis: {STATS['cases']} generated cases over {len(STATS['operations'])} "
        f"operations; statuses {dict(sorted(STATS['statuses'].items()))}"
    )
    for operation in sorted(STATS["operations"]):
        print("  ", operation)
    if STATS["cases"]:
        # Both an answer and a right error were seen: real ids reached the success paths.
        assert 200 in STATS["statuses"] and 404 in STATS["statuses"]
    assert httpx.get(f"{conformance_factory.url}/v1/models", timeout=30).status_code == 401
