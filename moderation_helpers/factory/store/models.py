"""Fine-tuned models: weights under ``models/<job id>/``, a row each in ``models``, and the
metadata the API edits (name, description, archived, thresholds) in ``model_meta``."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from moderation_helpers.factory.store.sqlite import Database, now

_MODEL_SELECT = (
    "SELECT models.*, model_meta.doc AS meta FROM models "
    "LEFT JOIN model_meta ON model_meta.id = models.id"
)


class ModelRecords(Database):
    """The store's models (a part of :class:`~moderation_helpers.factory.store.db.Store`)."""

    def add_model(
        self, model_id: str, job_id: str, root: str, targets: list[dict], path: Path
    ) -> None:
        """Register a fine-tuned model whose weights are in ``path``."""
        with self._txn() as conn:
            conn.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                (model_id, job_id, root, now(), json.dumps(targets), str(path)),
            )

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        """A model's record (``targets`` and ``meta`` parsed), or None when unknown."""
        rows = self._query(f"{_MODEL_SELECT} WHERE models.id=?", (model_id,))
        return _model_row(rows[0]) if rows else None

    def list_models(self, model_id: str | None = None) -> list[dict[str, Any]]:
        """All fine-tuned models (or the one of id ``model_id``, if any), newest first."""
        rows = self._query(
            f"{_MODEL_SELECT} WHERE (? IS NULL OR models.id=?) "
            "ORDER BY created DESC, models.rowid DESC",
            (model_id, model_id),
        )
        return [_model_row(r) for r in rows]

    def update_model_meta(self, model_id: str, **changes: Any) -> dict[str, Any] | None:
        """Merge ``changes`` into a model's editable metadata (name, description, archived,
        thresholds); returns the updated record, or None when the model is unknown."""
        with self._txn() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id=?", (model_id,)).fetchone() is None:
                return None
            row = conn.execute("SELECT doc FROM model_meta WHERE id=?", (model_id,)).fetchone()
            doc = {**(json.loads(row["doc"]) if row else {}), **changes}
            conn.execute(
                "INSERT OR REPLACE INTO model_meta VALUES (?, ?)", (model_id, json.dumps(doc))
            )
        return self.get_model(model_id)

    def delete_model(self, model_id: str) -> bool:
        """Forget a model and delete its weights; False when unknown (or already deleted: of two
        concurrent deletes, one wins)."""
        with self._txn() as conn:
            row = conn.execute("SELECT path FROM models WHERE id=?", (model_id,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM models WHERE id=?", (model_id,))
            conn.execute("DELETE FROM model_meta WHERE id=?", (model_id,))
        shutil.rmtree(row["path"], ignore_errors=True)
        return True


def _model_row(row: sqlite3.Row) -> dict[str, Any]:
    model = dict(row)
    model["targets"] = json.loads(model["targets"])
    model["meta"] = json.loads(model["meta"]) if model.get("meta") else {}
    return model
