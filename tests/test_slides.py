"""`./course slides` (tools/slides.py): the decks of two course notebooks and of a small notebook written
here, read back with the standard library's HTML parser, and bad input refused in one line."""
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from tools import slides

ROOT = Path(__file__).resolve().parents[1]
COURSE_NOTEBOOKS = [ROOT / "notebooks" / "02_attention.ipynb", ROOT / "notebooks" / "06c_deployment.ipynb"]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="  # 1x1 pixel
BLOCKS = {"p", "h1", "h2", "h3", "li", "pre", "div", "tr", "section"}  # elements that end a line of text


class Deck(HTMLParser):
    """What a deck shows: its subslides (innermost <section>s) with the title of each (a heading that
    opens it), its images, the lines of its text and how many code inputs it shows."""

    def __init__(self, html: str):
        super().__init__()
        self.depth, self.subslides, self.titles, self.images, self.inputs = 0, 0, [], 0, 0
        self.shown: list[str] = []  # the text in the slides, piece by piece
        self.awaiting_title = False  # in a subslide that has shown nothing yet
        self.title: list[str] | None = None  # the text of the title being read
        self.skipping: list[str] = []  # tags whose text is not shown: scripts, styles, anchor links
        self.feed(html)
        self.close()
        self.lines = [line.strip() for line in "".join(self.shown).splitlines() if line.strip()]

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "section":
            self.depth += 1
            self.subslides += self.depth == 2
            self.awaiting_title = self.depth == 2
        elif tag in ("h1", "h2", "h3") and self.awaiting_title:
            self.title, self.awaiting_title = [], False
        elif tag == "img" and self.depth:
            self.images += 1
            self.awaiting_title = False
        elif tag in ("script", "style") or "anchor-link" in classes:
            self.skipping.append(tag)
        self.inputs += "jp-InputArea-editor" in classes

    def handle_endtag(self, tag):
        if tag in BLOCKS:
            self.shown.append("\n")
        if self.skipping and tag == self.skipping[-1]:
            self.skipping.pop()
        elif tag == "section":
            self.depth -= 1
        elif tag in ("h1", "h2", "h3") and self.title is not None:
            self.titles.append("".join(self.title).strip())
            self.title = None

    def handle_data(self, data):
        if self.skipping or not self.depth:
            return
        if self.title is not None:
            self.title.append(data)
        elif data.strip():
            self.awaiting_title = False
        self.shown.append(data)


def build(notebooks: list[Path], out: Path, *options: str) -> dict[str, Deck]:
    assert slides.main([*map(str, notebooks), "--out", str(out), *options]) == 0
    return {path.stem: Deck((out / f"{path.stem}.slides.html").read_text(encoding="utf-8")) for path in notebooks}


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def has_image(output) -> bool:
    return any(mime.startswith("image/") for mime in output.get("data", {}))


def first_printed_line(cell) -> str:
    text = next(output.get("text") or output.data["text/plain"] for output in cell.outputs if not has_image(output))
    return text.splitlines()[0].strip()


def headings(cell, level: str) -> list[str]:
    """The headings of one level in a markdown cell (outside fenced code), as the deck writes them."""
    lines = re.sub(r"```.*?```", "", cell.source, flags=re.S).splitlines()
    return [re.sub(r"[`*]", "", line[len(level):]).strip() for line in lines if line.startswith(level)]


@pytest.fixture(scope="module")
def course_decks(tmp_path_factory):
    before = {path: path.read_bytes() for path in COURSE_NOTEBOOKS}
    decks = build(COURSE_NOTEBOOKS, tmp_path_factory.mktemp("decks"))
    assert {path: path.read_bytes() for path in COURSE_NOTEBOOKS} == before, "the notebooks must not change"
    return {path.stem: (nbformat.read(path, as_version=4), decks[path.stem]) for path in COURSE_NOTEBOOKS}


@pytest.mark.parametrize("stem", [path.stem for path in COURSE_NOTEBOOKS])
def test_every_section_of_a_course_notebook_opens_a_slide(course_decks, stem):
    notebook, deck = course_decks[stem]
    sections = [title for cell in notebook.cells if cell.cell_type == "markdown" for title in headings(cell, "## ")]
    assert len(sections) >= 5 and deck.subslides > len(sections)
    assert [title for title in sections if title not in deck.titles] == []


@pytest.mark.parametrize("stem", [path.stem for path in COURSE_NOTEBOOKS])
def test_a_course_deck_shows_the_figures_and_tagged_results_but_no_code(course_decks, stem):
    notebook, deck = course_decks[stem]
    code = [cell for cell in notebook.cells if cell.cell_type == "code" and "slides-skip" not in tags(cell)]
    assert deck.images == sum(has_image(output) for cell in code for output in cell.outputs) > 0
    assert deck.inputs == 0
    setup_lines = {line.strip() for cell in code for line in cell.source.splitlines()
                   if line.startswith(("import ", "from "))}
    assert {"import minilm"} <= setup_lines and not setup_lines & set(deck.lines)
    environment_report = next(cell for cell in code if "environment_report" in cell.source)
    assert first_printed_line(environment_report) not in deck.lines
    results = [first_printed_line(cell) for cell in code if "slides-output" in tags(cell)]
    assert results and [line for line in results if line not in deck.lines] == []


def small_notebook() -> nbformat.NotebookNode:
    """One cell for each rule and tag; a code cell's output names what it is."""
    def code(source, *outputs, tag=None):
        cell = nbformat.v4.new_code_cell(source, outputs=list(outputs))
        if tag:
            cell.metadata["tags"] = [tag]
        return cell

    def printed(text):
        return nbformat.v4.new_output("stream", name="stdout", text=text + "\n")

    def figure():
        return nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})

    remark = nbformat.v4.new_markdown_cell("A remark only the notebook makes.")
    remark.metadata["tags"] = ["slides-skip"]
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# The title\n\nWhat this deck is about."),
        code("import setup_module", printed("set-up done")),
        nbformat.v4.new_markdown_cell("## A section\n\nIts prose."),
        code("shown_code = 41 + 1", printed("the shown code's output"), tag="slides-code"),
        code("print_result()", printed("the result of the section"), tag="slides-output"),
        code("draw()", figure(), printed("the figure's printed caption")),
        code("draw_skipped()", figure(), tag="slides-skip"),
        remark,
        nbformat.v4.new_markdown_cell("### A subsection\n\nMore prose."),
    ])


def test_the_tags_choose_what_a_deck_shows(tmp_path):
    notebook = tmp_path / "small.ipynb"
    nbformat.write(small_notebook(), notebook)
    before = notebook.read_bytes()
    deck = build([notebook], tmp_path / "decks")["small"]
    assert notebook.read_bytes() == before
    assert deck.titles == ["The title", "A section", "A subsection"]
    assert {"What this deck is about.", "Its prose.", "More prose."} <= set(deck.lines)
    assert deck.inputs == 1 and "shown_code = 41 + 1" in deck.lines  # slides-code: its code, not its output
    assert "the result of the section" in deck.lines and "print_result()" not in deck.lines  # slides-output
    hidden = ["import setup_module", "set-up done", "the shown code's output", "the figure's printed caption",
              "draw()", "draw_skipped()", "A remark only the notebook makes."]
    assert [line for line in hidden if line in deck.lines] == []
    assert deck.images == 1  # the untagged figure; the one tagged slides-skip is left out


def test_slide_types_follow_headings_and_room():
    long_prose = "\n\n".join(f"Paragraph {i}, two lines long,\nas a notebook's prose is." for i in range(12))
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\nOpening prose."),
        nbformat.v4.new_markdown_cell("## Section\n\n```\n# a comment in a code block, not a heading\n```"),
        nbformat.v4.new_markdown_cell("### Subsection"),
        nbformat.v4.new_markdown_cell(long_prose),
    ])
    laid_out = slides.slide_notebook(notebook).cells
    kinds = [cell.metadata.slideshow.slide_type for cell in laid_out]
    assert kinds[:3] == ["slide", "slide", "subslide"]
    assert laid_out[0].source == "# Title\n\nOpening prose." and "# a comment" in laid_out[1].source
    long_pages = laid_out[3:]
    assert len(long_pages) > 2 and "subslide" in kinds[3:]
    assert "\n\n".join(cell.source for cell in long_pages) == long_prose


def test_reveal_and_require_can_come_from_a_local_copy(tmp_path):
    nbformat.write(small_notebook(), tmp_path / "small.ipynb")
    build([tmp_path / "small.ipynb"], tmp_path / "out", "--reveal-prefix", "reveal.js/", "--require-js", "js/require.js")
    page = (tmp_path / "out" / "small.slides.html").read_text(encoding="utf-8")
    assert '"reveal.js/dist/reveal.js"' in page and 'src="js/require.js"' in page
    assert "unpkg.com" not in page and "require.min.js" not in page


@pytest.mark.parametrize("content, says", [
    (None, "no such file"),
    (b"print('a script')\n", "not a notebook"),
    (b'{"cells": "JSON, but no nbformat field"}', "not a notebook"),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code"}]}', "not a valid notebook"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a notebook"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, content, says):
    notebook = tmp_path / "bad.ipynb"
    if content is not None:
        notebook.write_bytes(content)
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "slides.py"), str(notebook), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1 and says in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()
