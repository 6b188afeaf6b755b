"""Store notebooks in canonical form: no outputs, no execution counts, stable metadata and ids.

    python tools/nbclean.py notebooks/            # rewrite in place
    python tools/nbclean.py --check notebooks/    # exit 1 and list files that would change

Canonical JSON keeps diffs readable: only the ``tags`` of a cell's metadata survive, cell ids
are derived from the cell's position, and the notebook metadata is a fixed kernelspec.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def canonical(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the notebook in canonical form (mutates and returns ``nb``)."""
    nb.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    nb.nbformat, nb.nbformat_minor = 4, 5
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
        cell.id = f"{cell.cell_type}-{index:02d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report, do not rewrite")
    args = parser.parse_args(argv)
    files = sorted(
        f
        for p in args.paths
        for f in ([p] if p.is_file() else p.rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in f.parts
    )
    dirty = []
    for path in files:
        before = path.read_text(encoding="utf-8")
        after = render(canonical(nbformat.reads(before, as_version=4)))
        nbformat.validate(nbformat.reads(after, as_version=4))
        if before != after:
            dirty.append(path)
            if not args.check:
                path.write_text(after, encoding="utf-8")
    for path in dirty:
        print(f"{'not canonical' if args.check else 'cleaned'}: {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
