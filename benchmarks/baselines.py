"""Reference points for the local factory's quality: bag-of-words and frozen-embedding baselines.

Both train one logistic regression per label (one-vs-rest) on the same JSONL the factory trains
on, and return scores in the factory's shape so that one scorer compares them all:

    python benchmarks/baselines.py --run-dir RUN      # prints macro / per-label ROC-AUC
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import MultiLabelBinarizer

from moderation_helpers.core.jsonl import read_jsonl

TARGET = "moderation"
SAFE = "safe"


def label_frame(examples: Sequence[dict], labels: Sequence[str], target: str = TARGET):
    """0/1 frame, one column per label, from JSONL examples' ``labels[target]`` lists."""
    values = [ex["labels"].get(target, []) for ex in examples]
    values = [[v] if isinstance(v, str) else list(v) for v in values]
    binarizer = MultiLabelBinarizer(classes=list(labels))
    return pd.DataFrame(binarizer.fit_transform(values), columns=list(labels))


def roc_auc_table(truth: pd.DataFrame, scores: pd.DataFrame, safe: str = SAFE) -> dict:
    """Per-label ROC-AUC and the macro mean over every label but ``safe`` (reported apart)."""
    per_label = {
        label: float(roc_auc_score(truth[label], scores[label]))
        for label in truth.columns
        if truth[label].nunique() == 2  # AUC is undefined for a label with one class
    }
    kept = [label for label in per_label if label != safe]
    return {"macro": float(np.mean([per_label[k] for k in kept])), "per_label": per_label}


def tfidf_logreg(train_texts: Sequence[str], train_truth: pd.DataFrame, seed: int = 0):
    """TF-IDF over word 1-2 grams and char 2-5 grams, then a logistic regression per label."""
    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    model = make_pipeline(
        features,
        OneVsRestClassifier(
            LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced", random_state=seed)
        ),
    )
    model.fit(list(train_texts), train_truth.to_numpy())
    return model


def score_frame(model, texts: Sequence[str], labels: Sequence[str]) -> pd.DataFrame:
    """A fitted one-vs-rest model's probabilities as a frame with one column per label."""
    return pd.DataFrame(model.predict_proba(list(texts)), columns=list(labels))


def frozen_embedding_logreg(
    train_texts: Sequence[str], train_truth: pd.DataFrame, embed, seed: int = 0
):
    """Logistic regression per label on frozen sentence embeddings (``embed(texts) -> array``)."""
    model = OneVsRestClassifier(
        LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed)
    )
    model.fit(embed(list(train_texts)), train_truth.to_numpy())
    return model


def minilm_embedder(batch_size: int = 32):
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings (the untouched base encoder)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from moderation_helpers.classifier.network import encoder_path

    path = str(encoder_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()

    @torch.inference_mode()
    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=128,
                padding=True,
                return_tensors="pt",
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)

    return embed


def load_split(run_dir: Path, split: str) -> list[dict]:
    """One split of a prepared run folder."""
    return read_jsonl(Path(run_dir) / f"{split}.jsonl")


def labels_of(examples: Sequence[dict], target: str = TARGET) -> list[str]:
    """Every label seen for ``target``, ``safe`` first, others sorted."""
    seen = {
        v
        for ex in examples
        for v in (
            [ex["labels"][target]]
            if isinstance(ex["labels"][target], str)
            else ex["labels"][target]
        )
    }
    return sorted(seen, key=lambda x: (x != SAFE, x))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="prepared run folder")
    parser.add_argument("--eval-split", default="test", help="split to score (default: test)")
    parser.add_argument("--frozen", action="store_true", help="also the frozen-MiniLM baseline")
    args = parser.parse_args(argv)

    train = load_split(args.run_dir, "train")
    evaluation = load_split(args.run_dir, args.eval_split)
    labels = labels_of(train)
    truth_train = label_frame(train, labels)
    truth_eval = label_frame(evaluation, labels)
    train_texts = [ex["text"] for ex in train]
    eval_texts = [ex["text"] for ex in evaluation]

    rows = {"tfidf+logreg": tfidf_logreg(train_texts, truth_train)}
    if args.frozen:
        embed = minilm_embedder()
        frozen = frozen_embedding_logreg(train_texts, truth_train, embed)
        rows["frozen-minilm+logreg"] = (frozen, embed)
    for name, model in rows.items():
        if isinstance(model, tuple):
            fitted, embed = model
            scores = pd.DataFrame(fitted.predict_proba(embed(eval_texts)), columns=labels)
        else:
            scores = score_frame(model, eval_texts, labels)
        table = roc_auc_table(truth_eval, scores)
        per = ", ".join(f"{k} {v:.3f}" for k, v in table["per_label"].items())
        print(f"{name}: macro ROC-AUC {table['macro']:.3f} ({per})")


if __name__ == "__main__":
    main()
