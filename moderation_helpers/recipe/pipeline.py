"""Run the whole cookbook in batch: prepare → train → monitor → infer → deploy, with papermill.

    moderation-cookbook --run-dir runs/demo --source ../shared/data/civil_comments
    moderation-cookbook --run-dir runs/demo --source google/civil_comments -p training_steps 50
    moderation-cookbook --run-dir runs/q --source ../shared/data/civil_comments --preset quality
    moderation-cookbook docs      # run on the mirror and render every lesson into docs/

Each notebook runs in its own kernel and its executed copy is saved in the run folder
(``01_prepare.ipynb`` ...). A ``-p name value`` goes to every notebook that declares ``name`` in
its parameters cell; a ``--preset`` (:data:`PRESETS`) sets several at once, and ``-p`` still
overrides them. ``05_deploy`` exports the model's weights, which only the local factory
hands out: on the Mistral API backend that step is skipped, and the log says so. When the
backend resolves to the local factory, one is started for the run (store in
``<run_dir>/factory`` unless ``--store`` says otherwise) and stopped afterwards, also on failure.
Keys are never parameters: they reach the kernels through the environment only.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import papermill
import yaml

from moderation_helpers.classifier.encoders import find_encoder
from moderation_helpers.core.env import FACTORY_URL_ENV, SECRET_ENV, secret_values
from moderation_helpers.factory.process import start_factory, stop_factory
from moderation_helpers.recipe.client import resolve_backend
from moderation_helpers.recipe.run_folder import ensure_run_dir

STEPS = ("01_prepare", "02_train", "03_monitor", "04_infer", "05_deploy")
# Steps that need the model's weights, which only a local factory hands out.
LOCAL_ONLY_STEPS = ("05_deploy",)
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
# Offline defaults for a small machine and the 1,000-row mirror: keep every label and enough
# rows without any flag. Anything here can be overridden with -p.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "backend": "auto",
    "max_label_fraction": 1.0,
    "zero_flags_fraction": 0.4,
}
# Named sets of parameters, each chosen by cross-validation (docs/benchmarks.md, "The quality
# preset"). "quality" fine-tunes the larger base encoder, which the [mpnet] extra installs: it
# reads the behavioural suite far better and takes 4.5x the default's time per step, so it
# is not the default. Only the local factory trains these encoders.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "quality": {"model": "all-mpnet-base-v2", "training_steps": 500, "learning_rate": 5e-5},
}
_SECRET_NAME = re.compile(r"key|token|secret|password", re.IGNORECASE)
# The kernels' own log is about the machine, not the lesson: ipykernel warns "Kernel is running
# over TCP without encryption" on every start, and logs "KeyboardInterrupt caught in kernel" as
# an ERROR when jupyter_client interrupts it before every shutdown. A failing cell still stops
# the run with papermill's error, which names the cell.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


class PipelineError(RuntimeError):
    """A step of the pipeline failed, or it was asked something it cannot do."""


def parse_value(text: str) -> Any:
    """A ``-p`` value as papermill reads it: numbers, booleans, None, lists; else the string."""
    if text in ("None", "none", "null"):
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list, dict)) else text


def notebook_paths(notebooks_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The step notebooks, in order; a missing one is an error naming it."""
    folder = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    paths = {step: folder / f"{step}.ipynb" for step in STEPS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise PipelineError(f"notebook(s) not found: {', '.join(missing)}")
    return paths


def check_no_secrets(parameters: Mapping[str, Any]) -> None:
    """Refuse parameters that would write a key into an executed notebook."""
    secrets = set(secret_values(min_length=1))
    for name, value in parameters.items():
        if _SECRET_NAME.search(name) or (isinstance(value, str) and value in secrets):
            raise PipelineError(
                f"parameter {name!r} looks like a secret: keys come from the environment "
                f"({', '.join(SECRET_ENV)}), never from parameters, because papermill "
                "writes parameters into the executed notebooks"
            )


def preset_parameters(preset: str) -> dict[str, Any]:
    """The parameters a preset sets; an unknown name is an error listing the known ones."""
    if preset not in PRESETS:
        raise PipelineError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    return dict(PRESETS[preset])


def check_encoder(parameters: Mapping[str, Any], backend: str, preset: str) -> None:
    """Fail before any step runs when the run's ``model`` is a local encoder it cannot train:
    one whose packages are missing, or any local encoder when the backend is not local."""
    spec = find_encoder(parameters.get("model"))
    if spec is None:
        return
    from_preset = parameters.get("model") == PRESETS[preset].get("model")
    asked = f"preset {preset!r} fine-tunes" if from_preset else "model"
    if backend != "local":
        raise PipelineError(
            f"{asked} {spec.name}, a base encoder of the local factory; the {backend} backend "
            "trains its own models (unset MISTRAL_API_KEY or pass -p backend local)"
        )
    if not spec.installed():
        raise PipelineError(f"{asked} {spec.name}, which is not installed: {spec.install_hint()}")


def route_parameters(
    notebooks: Mapping[str, Path],
    parameters: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Give each notebook the parameters its ``parameters`` cell declares.

    ``defaults`` go quietly where they are declared; a parameter asked for explicitly that no
    notebook declares is an error (a typo would otherwise be ignored).
    """
    declared = {step: set(papermill.inspect_notebook(str(p))) for step, p in notebooks.items()}
    known = set().union(*declared.values())
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise PipelineError(
            f"no notebook declares parameter(s) {unknown}; known parameters: {sorted(known)}"
        )
    merged = {**(defaults or {}), **parameters}
    return {
        step: {k: v for k, v in merged.items() if k in names} for step, names in declared.items()
    }


@contextlib.contextmanager
def local_factory(store: Path, log: Callable[[str], None]) -> Iterator[str]:
    """Start a factory on a free port for the run, expose it to the kernels, stop it after."""
    handle = start_factory(store, port=0)
    previous = os.environ.get(FACTORY_URL_ENV)
    os.environ[FACTORY_URL_ENV] = handle.url
    log(f"local Classifier Factory at {handle.url} (pid {handle.pid}, store {store})")
    try:
        yield handle.url
    finally:
        if previous is None:
            os.environ.pop(FACTORY_URL_ENV, None)
        else:
            os.environ[FACTORY_URL_ENV] = previous
        stop_factory(handle)
        log(f"local Classifier Factory stopped (pid {handle.pid})")


def run_pipeline(
    run_dir: str | os.PathLike,
    source: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    notebooks_dir: str | os.PathLike | None = None,
    store: str | os.PathLike | None = None,
    kernel_name: str | None = None,
    preset: str = "default",
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Execute the step notebooks on ``source`` into ``run_dir``; return the executed copies.

    ``parameters`` override the ``preset``'s (:data:`PRESETS`), which override
    :data:`DEFAULT_PARAMETERS`. Raises :class:`PipelineError` naming
    the step (and its executed copy, which shows the failing cell) when one fails.
    """
    run_path = Path(run_dir).resolve()
    if Path(source).exists():
        source = str(Path(source).resolve())  # kernels may run elsewhere
    parameters = {**preset_parameters(preset), **(parameters or {})}
    if {"run_dir", "source"} & set(parameters):
        raise PipelineError("give run_dir and source as arguments, not as notebook parameters")
    defaults = {**DEFAULT_PARAMETERS, "run_dir": str(run_path), "source": source}
    check_no_secrets({**defaults, **parameters})
    notebooks = notebook_paths(notebooks_dir)
    routed = route_parameters(notebooks, parameters, defaults)
    backend = resolve_backend(parameters.get("backend", DEFAULT_PARAMETERS["backend"]))
    check_encoder(parameters, backend, preset)
    ensure_run_dir(run_path)  # only once the request is known to be sound
    sets = ", ".join(f"{k}={v}" for k, v in PRESETS[preset].items())
    log(f"run folder: {run_path}\nbackend: {backend}\npreset: {preset}" + f" ({sets})" * bool(sets))

    factory = (
        local_factory(Path(store) if store else run_path / "factory", log)
        if backend == "local"
        else contextlib.nullcontext()
    )
    executed: dict[str, Path] = {}
    with factory:
        for index, (step, path) in enumerate(notebooks.items(), start=1):
            output = run_path / path.name
            if step in LOCAL_ONLY_STEPS and backend != "local":
                log(
                    f"[{index}/{len(notebooks)}] {step} skipped: the model lives on the "
                    f"{backend} backend, which does not hand out weights to export"
                )
                continue
            log(f"[{index}/{len(notebooks)}] {step} -> {output}")
            started = time.monotonic()
            try:
                papermill.execute_notebook(
                    str(path),
                    str(output),
                    parameters=routed[step],
                    kernel_name=kernel_name,
                    progress_bar=False,
                    extra_arguments=KERNEL_ARGUMENTS,
                )
            except papermill.PapermillExecutionError as exc:
                raise PipelineError(
                    f"step {step} failed ({exc.ename}: {exc.evalue}); "
                    f"the executed notebook shows where: {output}"
                ) from exc
            executed[step] = output
            log(f"      done in {time.monotonic() - started:.0f} s")
    return executed
