"""A notebook as a reveal.js slide deck: its prose and figures, not its set-up code.

    ./course slides notebooks/02_attention.ipynb              # writes slides/02_attention.slides.html
    ./course slides --out /tmp/decks notebooks/*.ipynb
    ./course slides --reveal-prefix reveal.js --require-js reveal.js/require.js NOTEBOOK   # offline

The deck is nbconvert's reveal.js export of an in-memory copy of the notebook, whose cells get their
`slideshow.slide_type` from these rules, in place of any the notebook sets (its file is never changed):

- markdown is cut at each heading and, past MARKDOWN_PAGE_LINES lines, at paragraph breaks; a `#` or
  `##` heading starts a slide, a `###` heading a subslide (below it), and prose that does not fit on
  the current slide a subslide of its own; the rest continues the slide;
- a code cell never shows its code, shows its images (as a fragment, or on a subslide of their own when
  the slide is full) and leaves out its text output;
- raw cells are left out.

Tags on a cell change that: `slides-code` shows its code, `slides-output` its text output (printed
results, tables), and `slides-skip` leaves the cell out. Edit them in JupyterLab's property inspector
(the gear icon, "Common Tools", "Cell Tags").

The deck loads reveal.js and require.js from the network. For a classroom without one, point
`--reveal-prefix` at a copy of reveal.js 4 (the folder with dist/ and plugin/, as in the npm
package reveal.js@4.0.2) and `--require-js` at a copy of require.js; a relative path is taken from
the deck's folder. Formulas need MathJax, which still comes from the network: offline they stay TeX.

Bad input (a missing file, one that is not a notebook) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import math
import re
import struct
import sys
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter

# Room on a slide (960 x 700 px, nbconvert's reveal.js default) is counted in lines of prose.
LINE_PX = 26              # the height of a line of prose (20 px type)
LINE_CHARS = 85           # the characters in one
OUTPUT_CHARS = 88         # the characters in a line of printed output (16 px type), which wraps past that
SLIDE_LINES = 23          # the room on one slide
MARKDOWN_PAGE_LINES = 12  # a longer markdown cell is cut at paragraph breaks
HEADING_SIZES = {1: (25, 4), 2: (45, 2), 3: (60, 1.5)}  # by level: characters in a line, room each line takes
FIGURE_PX = (920, 600)    # the largest a figure is shown, width and height (DECK_STYLE shrinks larger ones)
FIGURE_LINES = 12         # the room of a figure of unknown size (not a PNG, or sized by the notebook)
DECK_STYLE = f"""
.reveal .jp-RenderedImage img {{ max-height: {FIGURE_PX[1]}px; }}
.reveal div.jp-OutputArea-output > pre {{ font-size: 16px; width: 100%; }}
"""  # added to nbconvert's reveal.js style: no figure taller than a slide, printed output in smaller type
HEADING = re.compile(r"(#{1,3})\s")
FENCE = re.compile(r"\s*(```|~~~)")
BOLD_LINE = re.compile(r"\*\*[^*]+\*\*")
CODE_TAG, OUTPUT_TAG, SKIP_TAG = "slides-code", "slides-output", "slides-skip"


class BadInput(Exception):
    """A notebook that cannot be read, or a deck that cannot be written: one line for the user."""


def read_notebook(path: Path) -> nbformat.NotebookNode:
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        content = json.loads(text)
    except OSError as error:
        raise BadInput(f"{path}: cannot read it ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{path}: not a notebook (its contents are not JSON)") from None
    if not isinstance(content, dict) or "nbformat" not in content:
        raise BadInput(f"{path}: not a notebook (JSON without a notebook's nbformat field)")
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except (nbformat.ValidationError, ValueError, KeyError, TypeError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadInput(f"{path}: not a valid notebook ({reason})") from None
    return notebook


def markdown_blocks(text: str) -> list[list[str]]:
    """The paragraphs of a markdown text, each a list of lines. A heading always opens a block; a line
    in a fenced code block, or an indented one after a blank (a list item's next paragraph), never does."""
    blocks, fenced, after_blank = [], False, True
    for line in text.splitlines():
        blank = not line.strip()
        starts_paragraph = after_blank and not line[:1].isspace()
        if not blank and not fenced and (not blocks or HEADING.match(line) or starts_paragraph):
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
        if FENCE.match(line):
            fenced = not fenced
        after_blank = blank
    for block in blocks:
        while not block[-1].strip():
            block.pop()
    return join_lead_ins(blocks)


def join_lead_ins(blocks: list[list[str]]) -> list[list[str]]:
    """Keep a block that introduces the next one (it ends with a colon, or is one bold line) with it."""
    joined: list[list[str]] = []
    for block in blocks:
        last = joined[-1] if joined else None
        if last and not HEADING.match(block[0]) and (last[-1].endswith(":") or BOLD_LINE.fullmatch(last[-1])):
            last += ["", *block]
        else:
            joined.append(block)
    return joined


def prose_lines(text: str) -> float:
    """The room a markdown text takes on a slide (a blank line stands for a paragraph's margin)."""
    room, fenced = 0.0, False
    for line in text.splitlines():
        heading = not fenced and HEADING.match(line)
        fenced ^= bool(FENCE.match(line))
        chars, line_room = HEADING_SIZES[len(heading.group(1))] if heading else (LINE_CHARS, 1)
        room += line_room * max(1, math.ceil(len(line) / chars)) + (1 if heading else 0)
    return room


def markdown_pages(text: str) -> list[str]:
    """A markdown text cut into pages: one per heading, cut again at paragraphs when long."""
    pages: list[str] = []
    for block in map("\n".join, markdown_blocks(text)):
        longer = f"{pages[-1]}\n\n{block}" if pages else block
        if pages and not HEADING.match(block) and prose_lines(longer) <= MARKDOWN_PAGE_LINES:
            pages[-1] = longer
        else:
            pages.append(block)
    return pages


def is_image(output) -> bool:
    return any(mime.startswith("image/") for mime in output.get("data", {}))


def figure_lines(output) -> float:
    """The room a figure takes: its height once shrunk to fit FIGURE_PX (a PNG's; other formats a guess)."""
    png = output.data.get("image/png", "").replace("\n", "")
    if not png.startswith("iVBORw0KGgo") or output.metadata.get("image/png"):  # base64 of the PNG signature
        return FIGURE_LINES
    width, height = struct.unpack(">II", base64.b64decode(png[:32])[16:24])  # from the IHDR chunk
    return height * min(1, FIGURE_PX[0] / width, FIGURE_PX[1] / height) / LINE_PX


def output_lines(output) -> float:
    """The room an output takes on a slide."""
    if is_image(output):
        return figure_lines(output)
    data = output.get("data", {})
    if "text/html" in data:
        return data["text/html"].count("<tr") + 1
    text = output.get("text") or data.get("text/markdown") or data.get("text/plain") or ""
    return sum(max(1, math.ceil(len(line) / OUTPUT_CHARS)) for line in text.splitlines() or [""])


class Layout:
    """The cells of a slide deck, laid out one by one; `used` is the room taken on the current slide."""

    def __init__(self):
        self.cells: list = []
        self.used = 0

    def add(self, cell, lines: float, slide_type: str) -> None:
        """Add a cell as `slide_type`; one meant for the current slide ("-" or "fragment") goes on a
        subslide of its own when the slide has no room for it."""
        if slide_type not in ("slide", "subslide") and self.used + lines > SLIDE_LINES:
            slide_type = "subslide"
        self.used = lines if slide_type in ("slide", "subslide") else self.used + lines
        cell.metadata["slideshow"] = {"slide_type": slide_type}
        self.cells.append(cell)

    def add_markdown(self, cell) -> None:
        for page in markdown_pages(cell.source):
            heading = HEADING.match(page)
            slide_type = "-" if not heading else "subslide" if len(heading.group(1)) == 3 else "slide"
            page_cell = nbformat.v4.new_markdown_cell(page)
            if "attachments" in cell:
                page_cell.attachments = cell.attachments
            self.add(page_cell, prose_lines(page), slide_type)

    def add_code(self, cell) -> None:
        tags = cell.metadata.get("tags", [])
        cell = copy.deepcopy(cell)
        cell.outputs = [output for output in cell.outputs if OUTPUT_TAG in tags or is_image(output)]
        lines = sum(output_lines(output) for output in cell.outputs)
        if CODE_TAG in tags:
            lines += cell.source.count("\n") + 1
        else:
            cell.metadata["transient"] = {"remove_source": True}  # how nbconvert's templates hide an input
        if lines:
            self.add(cell, lines, "fragment")


def slide_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the notebook laid out as slides by the rules and tags above."""
    layout = Layout()
    for cell in notebook.cells:
        if SKIP_TAG in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "markdown":
            layout.add_markdown(cell)
        elif cell.cell_type == "code":
            layout.add_code(cell)
    return nbformat.v4.new_notebook(cells=layout.cells, metadata=copy.deepcopy(notebook.metadata))


def read_slides(path: Path) -> nbformat.NotebookNode:
    slides = slide_notebook(read_notebook(path))
    if not slides.cells:
        raise BadInput(f"{path}: nothing to show (no prose, no figure, no tagged cell)")
    return slides


def slides_exporter(reveal_prefix: str | None, require_js: str | None) -> SlidesExporter:
    """nbconvert's reveal.js exporter, without prompts, with DECK_STYLE and the given places to load from."""
    template = "{%- extends 'index.html.j2' -%}{% block html_head_css %}<style>" + DECK_STYLE + "</style>{% endblock %}"
    exporter = SlidesExporter(exclude_input_prompt=True, exclude_output_prompt=True, raw_template=template)
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix.rstrip("/")
    if require_js:
        exporter.require_js_url = require_js
    return exporter


def write_deck(slides: nbformat.NotebookNode, deck: Path, exporter: SlidesExporter) -> None:
    title = deck.name.removesuffix(".slides.html")
    html, _ = exporter.from_notebook_node(slides, resources={"metadata": {"name": title}})
    try:
        deck.parent.mkdir(parents=True, exist_ok=True)
        deck.write_text(html, encoding="utf-8")
    except OSError as error:
        raise BadInput(f"cannot write {deck}: {error.strerror or error}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./course slides",
                                     description="Write each notebook as a reveal.js slide deck (see tools/slides.py).")
    parser.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    parser.add_argument("--out", type=Path, default=Path("slides"), help="folder for the decks (default: slides)")
    parser.add_argument("--reveal-prefix", metavar="URL_OR_PATH",
                        help="where the deck loads reveal.js 4 from (default: a CDN); a path is taken from the deck's folder")
    parser.add_argument("--require-js", metavar="URL_OR_PATH",
                        help="where the deck loads require.js from (default: a CDN); a path is taken from the deck's folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    exporter = slides_exporter(args.reveal_prefix, args.require_js)
    try:
        decks = {path: read_slides(path) for path in args.notebooks}  # every input read before any deck is written
        for path, slides in decks.items():
            deck = args.out / f"{path.stem}.slides.html"
            write_deck(slides, deck, exporter)
            print(f"{path} -> {deck}")
    except BadInput as error:
        print(f"slides: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
