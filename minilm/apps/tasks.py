"""Chapter 6: labelled examples for the applications, made from facts the data already holds.

An application asks a model to write an answer after a prompt. The story world (chapter 1) knows
the right answer to many questions about every story it writes, and the standard library's code
holds thousands of functions whose bodies a model can try to complete:

    task         prompt                                                  answer
    translation  "English: One morning, Mia found a red kite.\\n"        " Kuve toti, Mia kite red found."
                 "Story language:"                                        (the made-up language)
    qa           "<story>\\nQuestion: Who is the friend of Mia?\\nAnswer:"  " Leo"
    summary      "<story>\\nSummary:"                                      " Mia and Leo: ...; it ends happily."
    mood         "<story without its ending>\\nMood:"                       " happy" or " sad"
    code         "def name(args):\\n    \"\"\"Docstring.\"\"\""              "\\n" + the function's body

    train_stories, test_stories = story_split(StoryWorld(), train=400, test=100, seed=6)
    examples = story_examples("qa", train_stories)          # list[Example]
    functions = function_examples(stdlib_code(["json"]))    # list[Example] of task "code"

Every answer starts with a space (or, for code, a new line), so the prompt and the answer are
tokenised exactly as the same text would be in running prose: a model reads `prompt` and
continues it. `Example.instruction` is the same request written to a person, for the chat format
(minilm.apps.chat).

The mood task hides the story's last sentence: it says outright how the hero felt ("Mia felt
happy"), so keeping it would make the task a word lookup. Without it the mood must be guessed from
the plot: the world makes the ending happy 90% of the time after a good outcome and 10% after a
bad one, so no reader of the text can beat 90% on average (`mood_ceiling`).
"""
from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from typing import Iterable

from minilm.data.documents import Document
from minilm.data.language import translate
from minilm.data.stories import HAPPY_GIVEN_OUTCOME, Story, StoryWorld

STORY_TASKS = ("translation", "qa", "summary", "mood")
SENTENCE_END = re.compile(r"(?<=[.!?]) ")  # the story world ends every sentence with . and one space

PROMPTS = {  # what the model reads before it writes the answer
    "translation": "English: {text}\nStory language:",
    "qa": "{story}\nQuestion: {question}\nAnswer:",
    "summary": "{story}\nSummary:",
    "mood": "{story}\nMood:",
}
INSTRUCTIONS = {  # the same request written to a person, for the chat format
    "translation": "Translate into the story language: {text}",
    "qa": "{story}\n{question}",
    "summary": "Summarise this story in one line.\n{story}",
    "mood": "Does this story end happily or sadly? Say happy or sad.\n{story}",
}


@dataclass(frozen=True)
class Example:
    """One thing to ask a model, and what it should answer."""

    task: str  # translation, qa, summary, mood or code
    prompt: str  # the text the model continues
    answer: str  # the continuation we want (starts with a space or a new line)
    instruction: str = ""  # the request as a chat message (minilm.apps.chat); empty for code


def sentences(text: str) -> list[str]:
    """A story's sentences, in order (each keeps its final full stop)."""
    return SENTENCE_END.split(text.strip())


def without_ending(story: Story) -> str:
    """The story minus its last sentence, the one that says how the hero felt."""
    return " ".join(sentences(story.text)[:-1])


@dataclass(frozen=True)
class TaskSizes:
    """How many stories the applications learn from and are tested on, for one preset."""

    train_stories: int  # stories whose examples fine-tune the model
    test_stories: int  # other stories, never trained on, for the before/after scores
    eval_examples: int  # the most examples of one task that are scored (each answer is generated)
    generation_prompts: int  # story openings that each decoding strategy continues


TASK_SIZES = {"smoke": TaskSizes(train_stories=40, test_stories=8, eval_examples=8, generation_prompts=2),
              "cpu": TaskSizes(train_stories=3000, test_stories=150, eval_examples=150, generation_prompts=12),
              "gpu": TaskSizes(train_stories=20000, test_stories=500, eval_examples=500, generation_prompts=50)}


def story_split(world: StoryWorld, train: int, test: int, seed: int,
                exclude: Iterable[str] = ()) -> tuple[list[Story], list[Story]]:
    """`train` and `test` stories, none of whose texts is in `exclude` (e.g. the pretraining corpus)
    and no test story also a training story."""
    seen = set(exclude)
    train_stories = [story for story in world.stories(train, seed=seed) if story.text not in seen]
    seen |= {story.text for story in train_stories}
    test_stories = [story for story in world.stories(2 * test + 10, seed=seed + 1) if story.text not in seen]
    if len(test_stories) < test:
        raise ValueError(f"only {len(test_stories)} of the test stories differ from the {train} training stories "
                         f"(and the excluded texts); this world is too small for {test} test stories: ask for "
                         f"fewer, or use a larger world.")
    return train_stories, test_stories[:test]


def story_examples(task: str, stories: Iterable[Story]) -> list[Example]:
    """The examples of one story task: one per sentence (translation), per question (qa), per story."""
    if task not in STORY_TASKS:
        raise ValueError(f"task={task!r} is not a story task; use one of {', '.join(STORY_TASKS)} "
                         f"(code examples come from function_examples).")
    examples = []
    for story in stories:
        facts = story.facts
        if task == "translation":
            pairs = [({"text": sentence}, translate(sentence)) for sentence in sentences(story.text)]
        elif task == "qa":
            pairs = [({"story": story.text, "question": q}, answer) for q, answer in facts.qa]
        elif task == "summary":
            pairs = [({"story": story.text}, facts.summary)]
        else:
            pairs = [({"story": without_ending(story)}, facts.mood)]
        examples += [Example(task, PROMPTS[task].format(**fields), " " + answer, INSTRUCTIONS[task].format(**fields))
                     for fields, answer in pairs]
    return examples


def mood_ceiling() -> float:
    """The best expected accuracy of any mood guess made from a story without its ending.

    The text shows the outcome; the mood then follows it with probability HAPPY_GIVEN_OUTCOME, so
    the best guess is the likelier mood and is right with probability max(p, 1 - p) either way.
    """
    return min(max(p, 1 - p) for p in HAPPY_GIVEN_OUTCOME.values())


def mood_from_plot(story: Story) -> str:
    """The best possible guess (see `mood_ceiling`): happy after a good outcome, sad after a bad one."""
    return "happy" if HAPPY_GIVEN_OUTCOME[story.facts.outcome] >= 0.5 else "sad"


# ---- code: function bodies from the standard library ------------------------------------------

def _is_constant(statement: ast.stmt) -> bool:
    """A statement that is a lone constant: a docstring, or `...`."""
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _function_parts(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> tuple[str, str] | None:
    """(header, body) of one function's source, dedented: the header is the def line(s) and docstring.

    The cut falls just before the new line that ends the header, so the body starts with a new line.
    The header's last characters (a colon or the docstring's closing quotes) end a token however the
    text is split, so the prompt is tokenised as it is inside the whole file. A prompt ending in a
    new line would not be: in a file the new line merges with the indentation after it.
    """
    body = node.body
    has_docstring = _is_constant(body[0]) and isinstance(body[0].value.value, str)
    code = body[1:] if has_docstring else body
    if not code or all(isinstance(statement, ast.Pass) or _is_constant(statement) for statement in code):
        return None  # nothing to complete: an empty body, `pass`, or a lone `...`
    header_end = body[0].end_lineno if has_docstring else code[0].lineno - 1  # last header line (1-based)
    source = textwrap.dedent("".join(lines[node.lineno - 1:node.end_lineno]))
    header_lines = header_end - node.lineno + 1
    parts = source.splitlines(keepends=True)
    header, rest = "".join(parts[:header_lines]), "".join(parts[header_lines:])
    if header_end >= code[0].lineno or not rest.strip() or not header.endswith("\n"):
        return None  # the body starts on the def line (`def f(): return 1`)
    return header[:-1], "\n" + rest  # cut after the header's last character, where tokens split anyway


def function_examples(documents: Iterable[Document], max_body_lines: int = 12,
                      max_chars: int = 600) -> list[Example]:
    """One code example per function (or method) of each document: header -> body.

    Kept: functions that parse on their own once dedented, whose body has at most `max_body_lines`
    lines and whose whole source has at most `max_chars` characters (so it fits a small context).
    """
    examples = []
    for document in documents:
        try:
            tree = ast.parse(document.text)
        except SyntaxError:
            continue
        lines = document.text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            parts = _function_parts(node, lines)
            if parts is None:
                continue
            header, body = parts
            if len(body.splitlines()) > max_body_lines or len(header) + len(body) > max_chars:
                continue
            if not parses(header + body):  # a string whose lines are indented less than the code
                continue
            examples.append(Example("code", header, body))
    return examples


def parses(source: str) -> bool:
    """True when `source` is valid Python (it is parsed with `ast`, never run)."""
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: source holding a NUL byte
        return False
    return True
