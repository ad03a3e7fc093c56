"""Chapter 6 task examples: built from the story world's facts, checked against the world itself
(exact enumeration of a small world for the mood ceiling) and against `ast` for code."""
import ast
import math
from collections import defaultdict

import pytest

from minilm.data import StoryConfig, StoryWorld
from minilm.data.documents import Document
from minilm.data.language import translate
from minilm.apps.tasks import (STORY_TASKS, function_examples, mood_ceiling, mood_from_plot, parses, sentences,
                          story_examples, story_split, without_ending)
from minilm.tokenizer import BPETokenizer

WORLD = StoryWorld()
STORIES = WORLD.stories(30, seed=60)
SMALL = StoryConfig(max_words=1, words={"names": 2, "qualities": 2}, max_middle=0)


def test_sentences_rebuild_the_story_and_the_ending_is_the_last():
    for story in STORIES:
        parts = sentences(story.text)
        assert " ".join(parts) == story.text
        assert len(parts) == story.text.count(".")
        assert f"felt {story.plot['mood_word']}" in parts[-1]
        assert without_ending(story) == " ".join(parts[:-1])


def test_translation_examples_are_the_story_translation_sentence_by_sentence():
    for story in STORIES:
        examples = story_examples("translation", [story])
        assert " ".join(e.answer.strip() for e in examples) == story.facts.translation == translate(story.text)
        assert all(e.prompt.startswith("English: ") and e.prompt.endswith("\nStory language:") for e in examples)


def test_qa_summary_and_mood_examples_carry_the_facts():
    qa = story_examples("qa", STORIES)
    assert [(e.answer.strip()) for e in qa] == [a for s in STORIES for _, a in s.facts.qa]
    assert all(e.prompt.endswith("\nAnswer:") and e.answer.startswith(" ") for e in qa)
    summaries = story_examples("summary", STORIES)
    assert [e.answer.strip() for e in summaries] == [s.facts.summary for s in STORIES]
    for story, example in zip(STORIES, story_examples("mood", STORIES)):
        assert example.answer.strip() == story.facts.mood
        assert "felt" not in example.prompt  # the sentence that gives the mood away is gone
        assert example.prompt.startswith(without_ending(story)) and story.text.startswith(without_ending(story))


@pytest.mark.parametrize("task", STORY_TASKS)
def test_prompt_and_answer_tokenise_as_the_joined_text(task):
    examples = story_examples(task, STORIES[:10])
    tokenizer = BPETokenizer.train([e.prompt + e.answer for e in examples], 400)
    for e in examples:
        assert tokenizer.encode(e.prompt) + tokenizer.encode(e.answer) == tokenizer.encode(e.prompt + e.answer)


def test_instructions_hold_the_same_request():
    for task in STORY_TASKS:
        for example in story_examples(task, STORIES[:3]):
            source = example.prompt.split("\n")[0].removeprefix("English: ")
            assert source in example.instruction


def test_story_split_keeps_test_stories_unseen():
    train, test = story_split(WORLD, 50, 20, seed=3, exclude=[s.text for s in STORIES])
    texts = {s.text for s in train}
    assert len(test) == 20 and not texts & {s.text for s in test}
    assert not ({s.text for s in STORIES} & (texts | {s.text for s in test}))
    tiny = StoryWorld(SMALL)
    with pytest.raises(ValueError, match="too small"):
        story_split(tiny, 400, 400, seed=0)


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="not a story task"):
        story_examples("poetry", STORIES)


def test_mood_ceiling_is_the_bayes_accuracy_of_an_enumerated_world():
    """Group every story of a small world by its text without the ending: the best guess for a group
    is its likelier mood. The total probability of guessing right is the ceiling."""
    mass = defaultdict(lambda: defaultdict(float))
    plot_guess_right = 0.0
    for story in StoryWorld(SMALL).enumerate():
        p = math.exp(story.log_prob)
        mass[without_ending(story)][story.facts.mood] += p
        plot_guess_right += p * (mood_from_plot(story) == story.facts.mood)
    best = sum(max(moods.values()) for moods in mass.values())
    total = sum(sum(moods.values()) for moods in mass.values())
    assert total == pytest.approx(1.0, abs=1e-9)
    assert best == pytest.approx(mood_ceiling(), abs=1e-9)
    assert plot_guess_right == pytest.approx(best, abs=1e-9)


SOURCE = '''
import os


def add(a, b):
    """Add two numbers."""
    total = a + b
    return total


class Box:
    def size(self,
             unit="cm"):
        value = len(self.items)
        return f"{value}{unit}"

    def empty(self):
        """Nothing to complete."""

    def dots(self):
        ...


def one_liner(): return 1
'''


def test_function_examples_cut_header_and_body_as_written():
    examples = function_examples([Document(SOURCE, "code", {"path": "box.py"})])
    assert [(e.prompt, e.answer) for e in examples] == [
        ('def add(a, b):\n    """Add two numbers."""', "\n    total = a + b\n    return total\n"),
        ('def size(self,\n         unit="cm"):', '\n    value = len(self.items)\n    return f"{value}{unit}"\n'),
    ]
    assert all(e.task == "code" and parses(e.prompt + e.answer) for e in examples)


def test_function_examples_of_the_standard_library_parse_and_respect_the_limits():
    from minilm.data.sources import stdlib_code

    examples = function_examples(stdlib_code(["json", "textwrap"]), max_body_lines=6, max_chars=400)
    assert len(examples) >= 5
    for e in examples:
        assert ast.parse(e.prompt + e.answer).body[0].name in e.prompt
        assert len(e.answer.strip("\n").splitlines()) <= 6 and len(e.prompt + e.answer) <= 400
        assert e.answer.startswith("\n") and not e.prompt.startswith((" ", "\t"))


def test_parses():
    assert parses("def f(x):\n    return x\n")
    assert not parses("def f(x):\nreturn x\n")
    assert not parses("x = (1,\n")
    assert not parses("a = '\0'")
