"""Run an exported model folder in-process: onnxruntime + tokenizers + numpy, no torch, no server.

    from moderation_helpers.model.moderator import Moderator

    moderator = Moderator.load("deploy/")            # or variant="int8"
    moderator.moderate(["you are an idiot"])  # -> [Decision], with the folder's thresholds
                                              #    (0.5 where the folder has none, with a warning)
    moderator.score(texts)                    # -> {target: float32 array (n, n_labels)}
    ids = moderator.encode(texts)             # tokenize once (token counts: map(len, ids)) ...
    moderator.score_encoded(ids)              # ... and score those tokens (the factory's batcher)

Texts are tokenized once (in Rust, in parallel), sorted by length and cut into batches of about
``token_budget`` padded tokens, so that short texts go many to a batch and padding stays small;
results come back in input order. The execution provider is CUDA where onnxruntime has it, else
the CPU; :attr:`Moderator.providers` says which, and the log too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moderation_helpers.core import conversation
from moderation_helpers.core.cpu import available_cpus
from moderation_helpers.core.flags import (
    DEFAULT_THRESHOLD,
    SAFE_LABEL,
    Thresholds,
    ThresholdTable,
    thresholds_table,
)
from moderation_helpers.model.decisions import Decision, decide
from moderation_helpers.model.folder import (
    THRESHOLDS_JSON,
    TOKENIZER_JSON,
    ModelFolderError,
    read_classifier,
    read_thresholds,
    variant_path,
)

log = logging.getLogger("moderation_helpers.model.moderator")

# Padded tokens per batch (rows x longest row). On CPU small batches are faster, likely because
# their activations stay in the cache (benchmarks/bench_token_budget.py, 2-core EPYC: requests
# of 100 comments scored 1.5-1.8x as fast at 512 as at 4096, fp32 and int8; 128 to 1024 alike).
# A GPU wants much larger batches.
DEFAULT_TOKEN_BUDGET = 512
CUDA_TOKEN_BUDGET = 65536
MAX_BATCH_ROWS = 256


def default_providers() -> list[str]:
    """CUDA first where this onnxruntime build has it, the CPU always last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return [*wanted, "CPUExecutionProvider"]


class Moderator:
    """An exported classifier loaded with onnxruntime; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        record: dict[str, Any],
        session: Any,
        tokenizer: Any,
        thresholds: dict[str, Any] | None,
        *,
        variant: str,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
    ):
        self.folder = folder
        self.record = record
        self.variant = variant
        self.session = session
        self.providers: list[str] = list(session.get_providers())
        self.targets: list[dict[str, Any]] = [
            {k: t[k] for k in ("name", "labels", "loss_function")}
            | {"implied_by": t.get("implied_by") or {}}  # already applied by the graph
            for t in record["targets"]
        ]
        self.labels_by_target: dict[str, list[str]] = {
            t["name"]: list(t["labels"]) for t in self.targets
        }
        self.seq_len: int = int(record["seq_len"])
        self.token_budget = int(token_budget)
        self.thresholds_record = thresholds
        self.thresholds: dict[str, dict[str, float]] | None = (
            thresholds["thresholds"] if thresholds else None
        )
        self.safe_label: str = (thresholds or {}).get("safe_label") or SAFE_LABEL
        # The graph whose scores the thresholds were tuned on (None: not recorded).
        self.thresholds_graph: str | None = (thresholds or {}).get("graph")
        if self.thresholds_graph not in (None, variant):
            # int8 moves single scores by up to about 0.2 (05's check on the docs run): a tuned
            # cut-off then flags other comments than 04 measured, with nothing else to show it.
            log.warning(
                "%s: thresholds.json was tuned on %s scores and this Moderator runs the %s graph:"
                " load variant=%r, or tune thresholds on %s scores",
                folder,
                self.thresholds_graph,
                variant,
                self.thresholds_graph,
                variant,
            )
        self._warned_default = False
        self._outputs = [t["output"] for t in record["targets"]]
        self._pad_id = int(record["tokenizer"]["pad_id"])
        # Padding is done here per batch, after sorting by length; counting ignores seq_len.
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        from tokenizers import Tokenizer

        self._counter = Tokenizer.from_str(tokenizer.to_str())
        self._counter.no_truncation()
        self.special_tokens: int = self._tokenizer.num_special_tokens_to_add(is_pair=False)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        *,
        variant: str = "fp32",
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        token_budget: int | None = None,
    ) -> Moderator:
        """Load an exported model folder. ``variant``: ``"fp32"`` or ``"int8"``; ``threads``:
        onnxruntime's intra-op threads (default: the cores this process may use);
        ``providers``: onnxruntime execution providers (default: CUDA if present, then CPU);
        ``token_budget``: padded tokens per batch (default: 512 on CPU, 65536 on CUDA)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(folder)
        record = read_classifier(folder)
        model_path = variant_path(folder, record, variant)
        tokenizer_path = folder / TOKENIZER_JSON
        if not tokenizer_path.is_file():
            raise ModelFolderError(f"{tokenizer_path} not found: the folder is incomplete")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads or available_cpus())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # onnxruntime's own warnings about unused initializers
        wanted = list(providers or default_providers())
        available = ort.get_available_providers()
        usable = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(model_path), options, providers=usable)
        moderator = cls(
            folder,
            record,
            session,
            Tokenizer.from_file(str(tokenizer_path)),
            read_thresholds(folder),
            variant=variant,
            token_budget=token_budget or DEFAULT_TOKEN_BUDGET,
        )
        if token_budget is None and moderator.providers[0] == "CUDAExecutionProvider":
            moderator.token_budget = CUDA_TOKEN_BUDGET
        if wanted[0] not in moderator.providers:
            log.warning(
                "onnxruntime could not use %s (this build has %s); running on %s",
                wanted[0],
                available,
                moderator.providers,
            )
        log.info(
            "loaded %s (%s) on %s, %d threads",
            folder,
            variant,
            moderator.providers[0],
            options.intra_op_num_threads,
        )
        return moderator

    # -- tokens -------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (special tokens included, truncated at seq_len), for
        :meth:`score_encoded`: a caller that needs the token counts tokenizes only once."""
        return [e.ids for e in self._tokenizer.encode_batch(_as_texts(texts))]

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens the model reads per text (special tokens included, truncated at seq_len)."""
        ids = self.encode(texts)
        return np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Per text, the character ``(start, end)`` of each token the model reads, in order
        (special tokens left out, truncated at seq_len): which characters a token covers, and
        where the model stops reading a long text."""
        return [
            [
                span
                for span, special in zip(e.offsets, e.special_tokens_mask, strict=True)
                if not special
            ]
            for e in self._tokenizer.encode_batch(_as_texts(texts))
        ]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per string without special tokens or truncation (for chat truncation)."""
        encodings = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Row indices per batch: sorted by length, each batch at most ``token_budget`` padded
        tokens (and ``MAX_BATCH_ROWS`` rows)."""
        order = np.argsort(lengths, kind="stable")
        out: list[np.ndarray] = []
        start = 0
        while start < len(order):
            # Sorted ascending, so a batch's width is its last row's length.
            widths = lengths[order[start : start + MAX_BATCH_ROWS]]
            rows = np.arange(1, len(widths) + 1)
            fits = np.nonzero(rows * widths <= self.token_budget)[0]
            size = int(fits[-1]) + 1 if len(fits) else 1
            out.append(order[start : start + size])
            start += size
        return out

    def _pad(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        mask = np.arange(int(lengths.max())) < lengths[:, None]
        input_ids = np.full(mask.shape, self._pad_id, dtype=np.int64)
        input_ids[mask] = np.fromiter(
            (token for row in ids for token in row), dtype=np.int64, count=int(lengths.sum())
        )
        return input_ids, mask.astype(np.int64)

    # -- scoring ------------------------------------------------------------------------------
    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``{target: float32 array (len(texts), n_labels)}``, rows in input order."""
        return self.score_encoded(self.encode(texts))

    def score_encoded(self, ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """:meth:`score` of texts already tokenized by :meth:`encode`."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        scores = {
            t["name"]: np.zeros((len(ids), len(t["labels"])), dtype=np.float32)
            for t in self.targets
        }
        for idx in self.batches(lengths):
            input_ids, mask = self._pad([ids[i] for i in idx])
            outputs = self.session.run(
                self._outputs, {"input_ids": input_ids, "attention_mask": mask}
            )
            for t, values in zip(self.targets, outputs, strict=True):
                scores[t["name"]][idx] = values
        return scores

    def predict(self, texts: Sequence[str]) -> list[dict[str, dict[str, float]]]:
        """Scores per text, ``{target: {label: score}}`` (the factory's trainer's shape)."""
        return self.predict_encoded(self.encode(texts))

    def predict_encoded(self, ids: Sequence[Sequence[int]]) -> list[dict[str, dict[str, float]]]:
        """:meth:`predict` of texts already tokenized by :meth:`encode`."""
        scores = self.score_encoded(ids)
        per_target = {
            t["name"]: [
                dict(zip(t["labels"], row, strict=True)) for row in scores[t["name"]].tolist()
            ]
            for t in self.targets
        }
        return [{name: rows[i] for name, rows in per_target.items()} for i in range(len(ids))]

    def score_frame(self, texts: Sequence[str]):
        """Scores as evaluate.py's score frame: columns ``(target, label)``, one row per text."""
        import pandas as pd

        scores = self.score(texts)
        columns = pd.MultiIndex.from_tuples(
            [(t["name"], lab) for t in self.targets for lab in t["labels"]],
            names=["target", "label"],
        )
        values = np.concatenate([scores[t["name"]] for t in self.targets], axis=1)
        return pd.DataFrame(values.astype(np.float64), columns=columns)

    def threshold_table(self, thresholds: Thresholds | None = None) -> ThresholdTable:
        """The threshold of every label: the folder's ``thresholds.json``, overridden by
        ``thresholds`` (``{target: {label: value}}``), else :data:`DEFAULT_THRESHOLD` (logged
        once per Moderator). ValueError for thresholds of labels the model does not score."""
        table = thresholds_table(
            self.labels_by_target, self.thresholds, thresholds, default=DEFAULT_THRESHOLD
        )
        if table.defaulted and not self._warned_default:
            self._warned_default = True
            if self.thresholds is None:
                missing = f"{self.folder} has no {THRESHOLDS_JSON}"
            else:
                missing = f"{self.folder / THRESHOLDS_JSON} has no threshold for {table.defaulted}"
            log.warning(
                "%s: moderating at %s (%s); export with the run folder whose 04_infer tuned "
                "thresholds, or pass `thresholds`",
                missing,
                DEFAULT_THRESHOLD,
                table.source,
            )
        return table

    def moderate(
        self, texts: str | Sequence[str], thresholds: Thresholds | None = None
    ) -> list[Decision]:
        """One :class:`~moderation_helpers.model.decisions.Decision` per text, flagging each
        label whose score reaches its threshold (see :meth:`threshold_table`)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        table = self.threshold_table(thresholds)
        if not texts:
            return []
        return decide(texts, self.score(texts), self.labels_by_target, table, self.safe_label)

    def explain(
        self, texts: Sequence[str], labels: Sequence[str] | None = None, **options: Any
    ) -> list[dict[str, list[dict[str, Any]]]]:
        """Per text, the character spans that drove each flagged label's score (or each of
        ``labels``): ``{category: [{"start", "end", "weight"}, ...]}``; see
        :func:`moderation_helpers.model.explain.explain`."""
        from moderation_helpers.model.explain import explain

        return explain(self, texts, labels, **options)

    def render_conversations(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]]
    ) -> list[str]:
        """Each conversation as this model reads it: its latest turn alone for a model trained
        on texts, else the whole rendering (the earliest turns dropped to fit)."""
        for i, messages in enumerate(conversations):
            problems = conversation.message_problems(messages, f"conversations[{i}]")
            if problems:
                raise ValueError("; ".join(f"{field}: {msg}" for field, msg in problems))
        return conversation.render_many(
            conversations,
            rendering=self.record.get("rendering", conversation.RENDERING),
            count_tokens=self.count_tokens,
            max_tokens=self.seq_len - self.special_tokens,
        )

    def predict_conversations(
        self, conversations: Sequence[Sequence[Mapping[str, Any]]]
    ) -> list[dict[str, dict[str, float]]]:
        """:meth:`predict` for chats (lists of ``{"role", "content"}`` messages)."""
        return self.predict(self.render_conversations(conversations))


def _as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got one str: wrap it in a list")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is {type(texts[bad[0]]).__name__}, not str")
    return texts
