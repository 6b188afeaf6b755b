"""pages.spans: explanation spans highlighted in a notebook (HTML) and on a page (Markdown)."""

from __future__ import annotations

import matplotlib

# matplotlib.use, not MPLBACKEND: the environment would reach every notebook kernel the tests
# start, and a kernel without the inline backend shows no figure.
matplotlib.use("Agg")

import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.core.formatters import DisplayFormatter  # noqa: E402

from moderation_helpers.pages import lessons as lp  # noqa: E402
from moderation_helpers.pages.sanitize import Sanitizer  # noqa: E402
from moderation_helpers.pages.spans import (  # noqa: E402
    Highlights,
    explained_errors,
    explained_texts,
    highlight_html,
    highlight_markdown,
    worst_errors,
)

TEXT = "You *really* are an idiot | a <b>moron</b>\nbye"
SPANS = [
    {"start": TEXT.index("idiot"), "end": TEXT.index("idiot") + 5, "weight": 1.0},
    {"start": TEXT.index("moron"), "end": TEXT.index("moron") + 5, "weight": 0.4},
]


def test_markdown_puts_each_span_in_bold_brackets_on_one_escaped_line():
    out = highlight_markdown(TEXT, SPANS)
    assert "**⟦idiot⟧**<sub>1.00</sub>" in out and "**⟦moron⟧**<sub>0.40</sub>" in out
    assert "\n" not in out and "an **⟦idiot⟧**<sub>1.00</sub> \\| a" in out
    assert "\\*really\\*" in out and "\\|" in out and "\\<b\\>" in out  # no markup leaks


def test_html_marks_each_span_as_opaque_as_its_weight_and_escapes_the_rest():
    out = highlight_html(TEXT, SPANS)
    assert out.count("<mark") == 2 and "<b>" not in out and "&lt;b&gt;" in out
    strong, weak = (out.index(f">{word}</mark>") for word in ("idiot", "moron"))
    assert "rgba(255, 196, 0, 1.00)" in out[:strong] and "0.55)" in out[strong:weak]
    assert highlight_html("plain", []) == "plain"


def test_spans_outside_or_overlapping_are_clipped_not_duplicated():
    spans = [{"start": 0, "end": 3, "weight": 1.0}, {"start": 2, "end": 99, "weight": 0.5}]
    assert highlight_markdown("abcdef", spans).replace("\\", "") == (
        "**⟦abc⟧**<sub>1.00</sub>**⟦def⟧**<sub>0.50</sub>"
    )


def highlights() -> Highlights:
    row = {"error": "false positive", "label": "insult", "score": 0.93, "threshold": 0.5}
    return Highlights([{**row, "text": TEXT, "spans": SPANS}], ["error", "label", "score"])


def test_a_notebook_gets_html_and_markdown_and_the_page_shows_the_markdown(tmp_path):
    data, _ = DisplayFormatter().format(highlights())
    assert {"text/html", "text/markdown", "text/plain"} <= set(data)
    assert "<mark" in data["text/html"] and "⟦idiot⟧" in data["text/plain"]
    output = nbformat.v4.new_output("display_data", data=data)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("shown", outputs=[output])])
    written = lp.render_page(lp.page_notebook(nb, Sanitizer(tmp_path)), "04_infer", tmp_path)
    page = written[0].read_text(encoding="utf-8")
    assert "**⟦idiot⟧**" in page and "| false positive | insult | 0.930 |" in page
    assert "<mark" not in page and "<style" not in page and "<table" not in page


def frames() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    columns = pd.MultiIndex.from_tuples(
        [("m", "insult"), ("m", "safe"), ("m", "threat")], names=["target", "label"]
    )
    scores = pd.DataFrame(
        [[0.9, 0.1, 0.1], [0.6, 0.4, 0.1], [0.1, 0.9, 0.05], [0.2, 0.8, 0.45]], columns=columns
    )
    truth = pd.DataFrame([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], columns=columns, dtype=bool)
    return truth, scores, {("m", "insult"): 0.5, ("m", "safe"): 0.5, ("m", "threat"): 0.5}


def test_worst_errors_are_the_furthest_past_their_threshold_either_way():
    truth, scores, limits = frames()
    errors = worst_errors(truth, scores, limits, n=1)
    assert errors[["error", "row", "label"]].values.tolist() == [
        ["false positive", 0, "insult"],
        ["false negative", 2, "insult"],
    ]
    both = worst_errors(truth, scores, limits, n=5)
    assert both["error"].tolist() == ["false positive"] * 2 + ["false negative"] * 2
    assert "safe" not in both["label"].tolist()
    assert both["score"].tolist() == [0.9, 0.6, 0.1, 0.45]


def test_explained_errors_ask_each_comment_for_its_own_label():
    truth, scores, limits = frames()
    texts = ["you idiot", "meh idiot", "a real insult", "watch out"]
    asked = []

    def explain(batch, labels):
        asked.append((batch, labels))
        return [{labels[0]: [{"start": 0, "end": 3, "weight": 1.0}]}]

    shown = explained_errors(worst_errors(truth, scores, limits, n=1), texts, explain)
    assert asked == [(["you idiot"], ["insult"]), (["a real insult"], ["insult"])]
    assert "**⟦you⟧**" in shown._repr_markdown_()
    errors = worst_errors(truth, scores, limits, n=1)
    several = explained_errors(errors, texts, explain, n_targets=2)
    assert [row["label"] for row in several.rows] == ["m/insult", "m/insult"]


def test_explained_texts_show_a_row_per_flag_and_one_for_a_text_without():
    shown = explained_texts(["hi there", "you idiot"], [{}, {"insult": SPANS[:0], "toxicity": []}])
    assert [(row["label"], row["text"]) for row in shown.rows] == [
        ("-", "hi there"),
        ("insult", "you idiot"),
        ("toxicity", "you idiot"),
    ]
    assert "| - | hi there |" in shown._repr_markdown_()
