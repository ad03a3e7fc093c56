"""Authoring helper for the course's notebooks: write a notebook from a list of cells.

    from tools.nb import md, code, write
    write("notebooks/00_setup.ipynb", [md("# Title"), code("print(1)")])

Then run it to save real outputs at the cpu preset: `./course render notebooks/00_setup.ipynb`.
Outputs always come from running the notebook, never from editing its JSON.
"""
from __future__ import annotations

import textwrap

import nbformat


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip())


def write(path: str, cells: list) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = cells
    notebook.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    nbformat.write(notebook, path)
