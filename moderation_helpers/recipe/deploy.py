"""What 05_deploy calls: fetch the run's model folder from the factory that trained it, and
time the ways to run it.

The model folder itself (format, Moderator) lives in ``model``, its export in ``export``,
corpus moderation in ``corpus``. This module downloads the folder through the factory's API
(``GET /v1/fine_tuning/models/{id}/folder``: any store, any host), adds the run's own documents,
and measures texts per second the same way for every engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from moderation_helpers.core.env import FACTORY_TOKEN_ENV, factory_headers
from moderation_helpers.core.files import atomic_folder, atomic_write_text, write_json
from moderation_helpers.core.folder_route import ARCHIVE_SHA256_HEADER, FOLDER_PATH
from moderation_helpers.model.folder import (
    CLASSIFIER_JSON,
    MODEL_CARD,
    VARIANT_FILES,
    check_empty_output,
    read_classifier,
    read_thresholds,
)
from moderation_helpers.recipe.moderate import fine_tuned_model
from moderation_helpers.recipe.run_folder import (
    EVALUATION_JSON,
    JOB_JSON,
    MODEL_DIR,
    PREPARE_SUMMARY,
    THRESHOLDS_JSON,
    read_record,
)

CHUNK_BYTES = 1 << 20


class FolderFetchError(RuntimeError):
    """The factory refused the model folder, or what came back is not a sound one; says why."""


def exported_model_id(folder: str | os.PathLike) -> str | None:
    """The model id an exported folder was made from, or None where there is none."""
    path = Path(folder) / CLASSIFIER_JSON
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("model_id")


def export_inputs(run_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What an export takes from a run folder (each file optional): ``thresholds``,
    ``evaluation`` and ``summary``, as keyword arguments of ``export_from_store``."""
    found: dict[str, Any] = {}
    if run_dir is None:
        return found
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found")
    for key, name in (
        ("thresholds", THRESHOLDS_JSON),
        ("evaluation", EVALUATION_JSON),
        ("summary", PREPARE_SUMMARY),
    ):
        if (Path(run_dir) / name).is_file():
            found[key] = read_record(run_dir, name)
    return found


def _download(url: str, archive: Path, token: str | None, timeout: float) -> None:
    """Stream ``url`` into ``archive``; refuse an answer whose size or SHA-256 is not the one
    the factory announced."""
    import httpx

    headers = factory_headers(token)
    try:
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                raise FolderFetchError(
                    f"{url}: {response.status_code} {response.text[:300]}"
                    + (f" (set ${FACTORY_TOKEN_ENV})" if response.status_code == 401 else "")
                )
            expected = response.headers.get(ARCHIVE_SHA256_HEADER, "").lower()
            digest, size = hashlib.sha256(), 0
            with archive.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
    except httpx.TransportError as exc:
        raise ConnectionError(f"no factory answers at {url}: {exc}") from exc
    length = response.headers.get("content-length")
    if length is not None and int(length) != size:
        raise FolderFetchError(f"{url}: got {size} bytes of the announced {length}")
    if not expected:
        raise FolderFetchError(f"{url}: no {ARCHIVE_SHA256_HEADER} header: not extracted")
    if digest.hexdigest() != expected:
        raise FolderFetchError(
            f"{url}: the archive's SHA-256 is {digest.hexdigest()}, not the announced "
            f"{expected}: a corrupted download, not extracted"
        )


def _extract(archive: Path, into: Path) -> None:
    """Extract a flat archive of plain files; refuse any other member (a path, a link)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            for member in members:
                name = member.name
                if (
                    not member.isfile()
                    or name in ("", ".", "..")
                    or PurePosixPath(name).name != name
                ):
                    raise FolderFetchError(f"unexpected archive member {name!r}: not extracted")
            if len(set(names)) != len(names):
                raise FolderFetchError(f"duplicate archive members in {names}: not extracted")
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FolderFetchError(f"{archive} is not a readable tar.gz archive: {exc}") from exc


def fetch_model_folder(
    server_url: str,
    model_id: str,
    out: str | os.PathLike,
    *,
    token: str | None = None,
    timeout: float = 900.0,
) -> Path:
    """Download the factory's exported folder of ``model_id`` into ``out`` (new or empty) and
    return it: streamed into a temporary file beside ``out``, its SHA-256 checked, extracted
    and renamed into place whole, checked to be a model folder of ``model_id``. A refusal or a
    bad download leaves nothing at ``out``.

    The token, when the factory requires one, comes from ``$MODERATION_FACTORY_TOKEN`` (or
    ``token``), never from a notebook parameter or a command-line argument. ``timeout`` is per
    network wait: the first request of a model exports it on the factory (up to a minute).
    """
    out = check_empty_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    url = server_url.rstrip("/") + FOLDER_PATH.format(model_id=quote(model_id, safe=":"))
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tar.gz", dir=out.parent)
    os.close(fd)
    archive = Path(name)
    try:
        _download(url, archive, token, timeout)
        with atomic_folder(out) as work:
            work.chmod(0o755)  # mkdtemp makes it private; the folder is meant to be shared
            _extract(archive, work)
            found = read_classifier(work).get("model_id")
            read_thresholds(work)
            if found != model_id:
                raise FolderFetchError(f"{url} sent the folder of {found!r}, not {model_id!r}")
    finally:
        archive.unlink(missing_ok=True)
    return out


def add_run_documents(folder: str | os.PathLike, run_dir: str | os.PathLike) -> list[str]:
    """Write the run's ``thresholds.json`` (tuned by 04, checked to name the folder's model)
    over the published one, and, when the run's ``job.json`` is this model's, a model card with
    the run's evaluation and data summary; return the files written."""
    from moderation_helpers.export.model_card import model_card

    folder = Path(folder)
    record = read_classifier(folder)
    model = record["model_id"]
    written = []
    thresholds = run_thresholds(run_dir, model)
    if thresholds is not None:
        write_json(folder / THRESHOLDS_JSON, thresholds)
        written.append(THRESHOLDS_JSON)
    inputs = export_inputs(run_dir)
    job = read_record(run_dir, JOB_JSON) if (Path(run_dir) / JOB_JSON).is_file() else {}
    # The factory's card already says what the job was; the run adds its test figures and data.
    if job.get("fine_tuned_model") == model and (inputs.get("evaluation") or inputs.get("summary")):
        card = model_card(
            record,
            job=job,
            evaluation=inputs.get("evaluation"),
            summary=inputs.get("summary"),
            # the folder's thresholds now: the run's, else those the factory published
            thresholds_graph=(read_thresholds(folder) or {}).get("graph"),
        )
        atomic_write_text(folder / MODEL_CARD, card)
        written.append(MODEL_CARD)
    return written


def run_thresholds(run_dir: str | os.PathLike, model: str) -> dict[str, Any] | None:
    """The run's ``thresholds.json``, or None; refused when tuned for another model."""
    if not (Path(run_dir) / THRESHOLDS_JSON).is_file():
        return None
    thresholds = read_record(run_dir, THRESHOLDS_JSON)
    if thresholds.get("model") not in (None, model):
        raise FolderFetchError(
            f"the thresholds were tuned for model {thresholds['model']!r}, not {model!r}: "
            "export with the run folder of this model"
        )
    return thresholds


def export_run_model(
    run_dir: str | os.PathLike,
    *,
    int8: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Fetch the run's fine-tuned model (``job.json``) from the factory that trained it (its
    ``server_url``) into ``run_dir/model``, with the run's thresholds, evaluation and model
    card; return the folder.

    An export of the same model (with int8 when asked) is kept; an export of another model is
    replaced, since the run folder belongs to this run. Only a local job can be exported: the
    Mistral API does not hand out weights.
    """
    run_path = Path(run_dir)
    record = read_record(run_path, JOB_JSON)
    model = fine_tuned_model(record)
    if record.get("backend") != "local":
        raise RuntimeError(
            f"model {model} lives on the {record.get('backend')} backend, which does not hand "
            "out weights: only a model trained by the local factory can be exported"
        )
    out = run_path / MODEL_DIR
    variants = ["fp32", *(["int8"] if int8 else [])]
    if exported_model_id(out) == model and all(
        (out / VARIANT_FILES[v]).is_file() for v in variants
    ):
        log(f"{out} already holds {model} ({', '.join(variants)}): kept")
        return out
    run_thresholds(run_path, model)  # refuse thresholds of another model before downloading
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    try:
        fetch_model_folder(record["server_url"], model, out)
    except ConnectionError as exc:
        raise ConnectionError(
            f"{exc}. The model lives in the store of the factory that trained it: start it "
            "again on that store and at that address (`moderation-factory serve --store STORE "
            "--port PORT`)"
        ) from exc
    add_run_documents(out, run_path)
    log(f"fetched {model} from the run's factory in {time.perf_counter() - started:.1f} s")
    return out


def cycle(texts: Sequence[str], n: int) -> list[str]:
    """``n`` texts, repeating ``texts`` as often as needed (the same list for every engine)."""
    if not texts:
        raise ValueError("no texts to time")
    return [texts[i % len(texts)] for i in range(n)]


def texts_per_second(score: Callable[[list[str]], Any], texts: Sequence[str]) -> dict[str, Any]:
    """Time ``score(texts)`` once, after a warm-up call on a few of them (first-call costs:
    memory arenas, a model load on the server), and return texts, seconds and texts/s."""
    texts = list(texts)
    score(texts[:8])
    started = time.perf_counter()
    score(texts)
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds}
