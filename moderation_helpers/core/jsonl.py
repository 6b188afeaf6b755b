"""Validate, read and write Classifier Factory JSONL.

One line is one example, a text or a conversation (the Factory's two dataset kinds)::

    {"text": "...", "labels": {"moderation": ["insult", "toxicity"]}}
    {"messages": [{"role": "user", "content": "..."}], "labels": {"moderation": "safe"}}

``labels`` maps a *target* (a classification task) to one label (``single_class``) or a list of
labels (``multi_class``). A line may also carry ``label_scores``, a local Classifier Factory
extension (not part of Mistral's format): per ``multi_class`` target, a score in [0, 1] per label,
such as the share of raters who chose it; the local factory trains towards those scores instead
of 0/1 (labels without a score keep their 0/1 target)::

    {"text": "...", "labels": {"moderation": ["toxicity"]},
     "label_scores": {"moderation": {"toxicity": 0.83, "insult": 0.33}}}

Every error names the file, the 1-based line and the field, so a
person can open the file at the right place; files are written atomically, so a failure never
leaves half a file behind.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderation_helpers.core.conversation import message_problems
from moderation_helpers.core.files import atomic_write_text

SINGLE_CLASS = "single_class"
MULTI_CLASS = "multi_class"
LABEL_SCORES = "label_scores"  # the local extension's field (module docstring)
MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one line of a JSONL file."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"


class JSONLValidationError(ValueError):
    """Raised when a JSONL file has problems; ``problems`` lists every one found."""

    def __init__(self, path: str | os.PathLike, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
        more = len(problems) - MAX_PROBLEMS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{self.path}: {len(problems)} problem(s) found:\n{shown}{tail}")


@dataclass
class JSONLReport:
    """What a valid file holds: line count and, per target, its labels and their counts."""

    path: str
    n_lines: int
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    n_scored: int = 0  # lines that carry label_scores

    @property
    def targets(self) -> dict[str, list[str]]:
        """Sorted label set per target."""
        return {t: sorted(counts) for t, counts in self.label_counts.items()}


def _check_line(
    obj: Any, where: tuple[str, int], allowed: Mapping[str, Collection[str]] | None
) -> tuple[list[Problem], dict[str, list[str]], dict[str, bool]]:
    """Problems of one parsed line, its labels per target, and which targets used a list."""
    path, lineno = where
    problems: list[Problem] = []
    labels_of: dict[str, list[str]] = {}
    is_list: dict[str, bool] = {}

    def bad(fld: str, msg: str) -> None:
        problems.append(Problem(path, lineno, fld, msg))

    if not isinstance(obj, dict):
        bad("<line>", f"expected a JSON object, got {type(obj).__name__}")
        return problems, labels_of, is_list
    text = obj.get("text")
    if "text" in obj and "messages" in obj:
        bad("messages", "a line holds either 'text' or 'messages', not both")
    elif "messages" in obj:
        for fld, msg in message_problems(obj["messages"]):
            bad(fld, msg)
    elif "text" not in obj:
        bad("text", "missing: a line needs 'text' (a string) or 'messages' (a conversation)")
    elif not isinstance(text, str):
        bad("text", f"expected a string, got {type(text).__name__}")
    elif not text.strip():
        bad("text", "empty text")

    labels = obj.get("labels")
    if "labels" not in obj:
        bad("labels", "missing")
        return problems, labels_of, is_list
    if not isinstance(labels, dict):
        bad("labels", f"expected an object mapping target to label(s), got {type(labels).__name__}")
        return problems, labels_of, is_list
    if not labels:
        bad("labels", "empty object: no target given")
    for target, value in labels.items():
        fld = f"labels.{target}"
        if isinstance(value, str):
            values, is_list[target] = [value], False
        elif isinstance(value, list):
            is_list[target] = True
            if not value:
                bad(fld, "empty label list")
                continue
            non_str = [v for v in value if not isinstance(v, str)]
            if non_str:
                bad(fld, f"labels must be strings, got {non_str[0]!r}")
                continue
            values = value
        else:
            bad(fld, f"expected a label or a list of labels, got {type(value).__name__}")
            continue
        if any(not v.strip() for v in values):
            bad(fld, "empty label name")
            continue
        if allowed is not None:
            if target not in allowed:
                bad(fld, f"unknown target {target!r}; expected one of {sorted(allowed)}")
                continue
            unknown = sorted(set(values) - set(allowed[target]))
            if unknown:
                bad(fld, f"unknown label(s) {unknown}; expected one of {sorted(allowed[target])}")
                continue
        labels_of[target] = values
    if LABEL_SCORES in obj:
        for fld, msg in _score_problems(obj[LABEL_SCORES], is_list, allowed):
            bad(fld, msg)
    return problems, labels_of, is_list


def _score_problems(
    scores: Any, is_list: Mapping[str, bool], allowed: Mapping[str, Collection[str]] | None
) -> list[tuple[str, str]]:
    """``(field, message)`` per problem of a line's ``label_scores``: an object mapping each
    of the line's list-labelled targets to ``{label: number in [0, 1]}``."""
    if not isinstance(scores, dict):
        return [
            (
                LABEL_SCORES,
                f"expected an object mapping target to scores, got {type(scores).__name__}",
            )
        ]
    out = []
    for target, per_label in scores.items():
        fld = f"{LABEL_SCORES}.{target}"
        if not is_list.get(target, False):
            out.append((fld, "scores need a multi_class target (a list under labels)"))
        elif not isinstance(per_label, dict):
            out.append(
                (fld, f"expected an object mapping label to score, got {type(per_label).__name__}")
            )
        else:
            for label, score in per_label.items():
                if allowed is not None and label not in allowed.get(target, ()):
                    out.append(
                        (
                            f"{fld}.{label}",
                            f"unknown label; expected one of {sorted(allowed[target])}",
                        )
                    )
                elif (
                    isinstance(score, bool)
                    or not isinstance(score, int | float)
                    or not 0 <= score <= 1
                ):
                    out.append((f"{fld}.{label}", f"expected a number in [0, 1], got {score!r}"))
    return out


def validate_jsonl(
    path: str | os.PathLike, allowed_labels: Mapping[str, Collection[str]] | None = None
) -> JSONLReport:
    """Check every line of a Classifier Factory JSONL file and report its label sets.

    Raises ``FileNotFoundError`` for a missing file and ``JSONLValidationError`` listing every
    problem (file, line, field) otherwise. ``allowed_labels`` (target -> labels) turns labels
    outside that set into problems too.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    problems: list[Problem] = []
    counts: dict[str, Counter] = defaultdict(Counter)
    used_list: dict[str, bool] = defaultdict(bool)
    n_lines = n_scored = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = (str(path), lineno)
            if not raw.strip():
                problems.append(Problem(str(path), lineno, "<line>", "empty line"))
                continue
            n_lines += 1
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                problems.append(Problem(*where, "<line>", f"not UTF-8 ({exc.reason})"))
                continue
            except json.JSONDecodeError as exc:
                problems.append(Problem(*where, "<line>", f"not valid JSON ({exc.msg})"))
                continue
            line_problems, labels_of, is_list = _check_line(obj, where, allowed_labels)
            problems.extend(line_problems)
            n_scored += isinstance(obj, dict) and LABEL_SCORES in obj
            for target, values in labels_of.items():
                counts[target].update(values)
            for target, flag in is_list.items():
                used_list[target] |= flag
    if n_lines == 0 and not problems:
        problems.append(Problem(str(path), 1, "<file>", "file holds no examples"))
    if problems:
        raise JSONLValidationError(path, problems)
    return JSONLReport(
        path=str(path),
        n_lines=n_lines,
        label_counts={t: dict(sorted(c.items())) for t, c in sorted(counts.items())},
        kinds={t: MULTI_CLASS if used_list[t] else SINGLE_CLASS for t in sorted(counts)},
        n_scored=n_scored,
    )


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Validate, then return the examples of a JSONL file as dicts."""
    validate_jsonl(path)
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write records as JSONL atomically (UTF-8, one compact object per line)."""
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, body)
