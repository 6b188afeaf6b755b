"""Files of ``moderate-corpus``: read a corpus, plan its blocks, write and read the output folder.

A corpus is a parquet file or a folder of parquet files, a JSON-lines file (``.jsonl``,
``.ndjson``, ``.json``) or a CSV file (``.csv``), optionally compressed (``.gz``, ``.bz2``). It
is read with Arrow in the driver and cut into fixed row ranges, the *blocks*: block ``i`` holds
rows ``[i * block_rows, (i + 1) * block_rows)`` and becomes ``part-0000i.parquet`` in the output
folder, written atomically (a hidden temporary file, then a rename). ``_manifest.json`` records
what the folder was made from, so that a re-run over the same input and model resumes (blocks
whose part exists are skipped) and a re-run over anything else is refused unless asked to
overwrite. Names starting with ``_`` or ``.`` are ones Arrow's dataset reader skips, so
``pd.read_parquet(OUT)`` reads the parts alone, in row order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from moderation_helpers.core.files import atomic_path, write_json

MANIFEST = "_manifest.json"
PART_GLOB = "part-*.parquet"
ROW_COLUMN = "row"
ERROR_COLUMN = "error"
IS_FLAGGED_COLUMN = "is_flagged"
# With --explain: per flagged row, the JSON of Moderator.explain's {category: spans}.
SPANS_COLUMN = "spans"
# A reason found while reading (a JSON value that is not a string); dropped from the output.
READ_ERROR_COLUMN = "__read_error__"
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
MANIFEST_VERSION = 1


class CorpusError(ValueError):
    """The corpus, the output folder or a request cannot be used; the message says why."""


def part_name(block: int) -> str:
    """The output file of one block."""
    return f"part-{block:05d}.parquet"


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    for kind, known in (
        ("parquet", PARQUET_SUFFIXES),
        ("json", JSON_SUFFIXES),
        ("csv", CSV_SUFFIXES),
    ):
        if last in known:
            return kind
    raise CorpusError(
        f"{path}: unknown corpus format {last or '(no suffix)'!r}: give a parquet file or folder, "
        f"JSON lines ({', '.join(JSON_SUFFIXES)}) or CSV"
    )


def input_files(path: str | os.PathLike) -> list[Path]:
    """The files a corpus path stands for: itself, or a folder's parquet files in name order."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: no such file or folder")
    if not path.is_dir():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in PARQUET_SUFFIXES
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise CorpusError(f"{path}: folder holds no parquet file")
    return files


def _first_bad_json_line(path: Path) -> tuple[int, str] | None:
    """Line number and reason of the first line that is not a JSON object (error path only)."""
    with pa.input_stream(str(path), compression="detect") as stream:
        for number, raw in enumerate(stream.read().decode("utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                return number, exc.msg
            if not isinstance(value, dict):
                return number, f"a JSON {type(value).__name__}, not an object"
    return None


def _read_json_mixed(path: Path, text_column: str) -> pa.Table:
    """JSON lines whose text field mixes strings with other values: each bad value is a row
    error, not a crash. pandas reads what Arrow's typed reader refuses."""
    import pandas as pd

    frame = pd.read_json(path, lines=True, dtype=False)
    if text_column in frame:
        texts = frame[text_column]
        not_string = texts.notna() & texts.str.len().isna()  # .str gives NaN for non-strings
        frame[text_column] = texts.where(~not_string, None)
        frame[READ_ERROR_COLUMN] = pd.Series(None, index=frame.index, dtype=object).mask(
            not_string, "text is not a string"
        )
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CorpusError(f"{path}: a field mixes types that Arrow cannot store: {exc}") from exc


def _read_json(path: Path, text_column: str) -> pa.Table:
    try:
        return pa_json.read_json(path)
    except pa.ArrowInvalid as exc:
        bad = _first_bad_json_line(path)
        if bad is not None:
            raise CorpusError(f"{path}: line {bad[0]}: {bad[1]}") from exc
        if "changed from" in str(exc):  # a field with values of several JSON types
            return _read_json_mixed(path, text_column)
        raise CorpusError(f"{path}: {exc}") from exc


def read_corpus(path: str | os.PathLike, text_column: str = "text") -> pa.Table:
    """Read a corpus into one Arrow table, its text column checked to exist.

    A value of the text column that is not a string is kept (as null, with the reason in a
    column the scorer turns into the row's ``error``). Errors name the file, and the line
    for a JSON line that does not parse.
    """
    path = Path(path)
    kind = _format_of(path)
    files = input_files(path)
    try:
        if kind == "parquet":
            table = pa.concat_tables(
                [pq.read_table(f) for f in files], promote_options="permissive"
            )
        elif kind == "json":
            table = _read_json(path, text_column)
        else:
            options = pa_csv.ConvertOptions(column_types={text_column: pa.string()})
            table = pa_csv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"{path}: cannot read it as {kind}: {exc}") from exc
    if text_column not in table.column_names:
        raise CorpusError(
            f"{path}: no field {text_column!r} (the text column); fields: {table.column_names}"
        )
    return table


def reserved_conflicts(columns: list[str]) -> list[str]:
    """Input columns whose names the output uses for its own columns."""
    own = {ROW_COLUMN, ERROR_COLUMN, IS_FLAGGED_COLUMN, SPANS_COLUMN}
    return [c for c in columns if c in own or c.startswith(("score/", "flagged/"))]


def default_block_rows(n_rows: int) -> int:
    """Rows per block: about 16 blocks for a small corpus, at most 4,096 rows for a large one
    (a failed block loses little, the bar moves), at least 64 (per-block costs stay small)."""
    return int(min(4096, max(64, math.ceil(n_rows / 16))))


def n_blocks(n_rows: int, block_rows: int) -> int:
    """How many blocks of ``block_rows`` rows cover ``n_rows`` rows."""
    return math.ceil(n_rows / block_rows) if n_rows else 0


def input_fingerprint(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Name, size and modification time of every input file: a changed file changes it."""
    return [
        {"file": str(f.resolve()), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns}
        for f in input_files(path)
    ]


def prepare_output(
    out_dir: str | os.PathLike, plan: Mapping[str, Any], *, overwrite: bool
) -> tuple[Path, set[int]]:
    """Make ``out_dir`` ready for ``plan``; return it and the blocks already written.

    A folder holding a manifest of the same plan resumes. Anything else is refused unless
    ``overwrite``, which deletes this tool's own files (parts, temporaries, manifest) only: a
    folder with other files in it is never emptied.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: the output must be a folder, and this is a file")
    out.mkdir(parents=True, exist_ok=True)
    ours = {p for p in out.iterdir() if p.name == MANIFEST or _is_part_or_tmp(p.name)}
    foreign = sorted(p.name for p in out.iterdir() if p not in ours)
    if foreign:
        raise CorpusError(f"{out}: holds files moderate-corpus did not write ({foreign[:5]}...)")
    manifest_path = out / MANIFEST
    if ours and not overwrite:
        if not manifest_path.is_file():
            raise CorpusError(f"{out}: parts without {MANIFEST}; use overwrite to start again")
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if previous.get("plan") != dict(plan):
            changed = sorted(
                k
                for k in set(plan) | set(previous.get("plan", {}))
                if previous.get("plan", {}).get(k) != plan.get(k)
            )
            raise CorpusError(
                f"{out}: holds the output of another run (differs in {changed}); use overwrite "
                "(--overwrite) to replace it or choose another folder"
            )
    elif ours:
        for p in ours:
            p.unlink()
    for tmp in out.glob(".part-*"):  # a temporary left by a worker that died mid-write
        tmp.unlink()
    done = {int(p.name[5:10]) for p in out.glob(PART_GLOB)}
    return out, done


def _is_part_or_tmp(name: str) -> bool:
    return (name.startswith("part-") and name.endswith(".parquet")) or name.startswith(".part-")


def write_manifest(out: Path, plan: Mapping[str, Any], **status: Any) -> Path:
    """Write ``_manifest.json`` (the plan and the run's status) atomically."""
    return write_json(out / MANIFEST, {"version": MANIFEST_VERSION, "plan": dict(plan), **status})


def write_part(out: Path, block: int, table: pa.Table) -> Path:
    """Write one block's output atomically: a reader never sees half a part."""
    final = out / part_name(block)
    with atomic_path(final) as tmp:  # ".part-NNNNN.parquet.*.tmp": prepare_output clears those
        pq.write_table(table, tmp)
    return final


def output_totals(out: str | os.PathLike) -> dict[str, int]:
    """Rows, bad rows and flagged rows of an output folder, counted from its parts."""
    parts = sorted(Path(out).glob(PART_GLOB))
    if not parts:
        return {"rows": 0, "errors": 0, "flagged": 0}
    table = pa.concat_tables(
        [pq.read_table(p, columns=[ERROR_COLUMN, IS_FLAGGED_COLUMN]) for p in parts]
    )
    flagged = pc.sum(pc.fill_null(table[IS_FLAGGED_COLUMN], False)).as_py() or 0
    return {
        "rows": table.num_rows,
        "errors": table.num_rows - table[ERROR_COLUMN].null_count,
        "flagged": int(flagged),
    }


def read_moderated(out: str | os.PathLike, columns: list[str] | None = None):
    """The output folder as one pandas frame, rows in input order."""
    parts = sorted(Path(out).glob(PART_GLOB))
    if not parts:
        raise CorpusError(f"{out}: no part files (has moderate-corpus run?)")
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])
    return table.to_pandas()
