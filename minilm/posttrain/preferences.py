"""Preference pairs from the story world: for one question, an answer it holds and one it does not.

Preference tuning learns from comparisons, "this answer is better than that one". People write
them for real assistants; the story world can write them itself, because it knows every story's
facts (chapter 1). For each question about a story the chosen answer is the true one and the
rejected answer is a plausible wrong one: the answer to the same question in another story, so it
has the right kind (a name for "who", a colour for "what color") and only the facts tell them
apart. Where one of those other answers also appears in this story's text (the friend's name, when
the question asks for the hero), it is taken first: a model that only copies a name from the text
cannot tell those two apart.

    pairs = preference_pairs(stories, seed=0)
    pairs[0].prompt, pairs[0].chosen, pairs[0].rejected   # "<story>\\nQuestion: ...\\nAnswer:", " Mia", " Leo"
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from minilm.apps.task_eval import normalize_answer
from minilm.apps.tasks import story_examples
from minilm.data import Story


@dataclass(frozen=True)
class PreferencePair:
    """One prompt, the answer the story's facts support, and a plausible one they contradict."""

    prompt: str  # the question with its story, as chapter 6's qa prompt
    chosen: str  # the true answer (with its leading space)
    rejected: str  # a wrong answer of the same kind (with its leading space)
    question: int  # which of the world's questions this is (its place in StoryFacts.qa)


def preference_pairs(stories: Sequence[Story], seed: int = 0) -> list[PreferencePair]:
    """A pair for every question about every story; the rejected answers come from the other stories."""
    examples = [story_examples("qa", [story]) for story in stories]  # per story, one example per question
    answers_by_question = defaultdict(set)  # question number -> every answer any story gives it
    for story_examples_ in examples:
        for number, example in enumerate(story_examples_):
            answers_by_question[number].add(example.answer)
    rng = random.Random(seed)
    pairs = []
    for story, story_examples_ in zip(stories, examples):
        for number, example in enumerate(story_examples_):
            wrong = sorted(a for a in answers_by_question[number]
                           if normalize_answer(a) != normalize_answer(example.answer))
            if not wrong:
                continue  # every story gave this question the same answer: nothing to contrast
            in_text = [a for a in wrong if re.search(rf"\b{re.escape(a.strip())}\b", story.text)]  # a word, not "hen" in "then"
            rejected = rng.choice(in_text or wrong)
            pairs.append(PreferencePair(example.prompt, example.answer, rejected, number))
    if not pairs:
        raise ValueError(f"the {len(stories)} stories give every question the same answer, so no pair can be "
                         f"made; use more stories (at least two that differ).")
    return pairs
