"""Chapter 8: questions whose answer is not in the story — hallucination, and learning to say "I don't know".

Chapter 6's QA model only ever saw questions the story answers, so it answers everything: ask it
about someone the story never mentions and it names somebody anyway. Here we ask such questions on
purpose, in the exact words of the story world's own questions (minilm.data.stories.questions) but
about a name or an object the story does not contain, with the right answer ABSTAIN:

    story     "... a shy fox named Mia lived in a snowy valley. Mia had a friend, ... named Leo. ..."
    asked     "Who is the friend of Zoe?"      "What color was the lamp?"      (no Zoe, no lamp)
    answer    " I don't know"

    questions = unanswerable_questions(story, random.Random(0), StoryWorld())   # [(question, ABSTAIN)]
    run = abstention_models()                      # "qa" and "qa+abstain", fine-tuned once, then cached
    rows = abstention_report(run.models["qa+abstain"], run.tokenizer, run.answerable, run.unanswerable)
    curve = coverage_curve(run.models["qa"], run.tokenizer, run.answerable, run.unanswerable)
    plt.plot(curve.coverage, curve.hallucination)  # answering less often: fewer invented answers

The two fine-tunes start from the course model with chapter 6's recipe (finetune_config("qa")) for
the same steps and seed: "qa" on answerable questions only, "qa+abstain" with a share of
unanswerable ones too.

Confidence (coverage_curve) is the probability the model gives to exactly the answer it wrote,
followed by the end of text: exp of the total log-probability of its greedy answer. It is a
probability the model itself stands behind, comparable between the two models, and it needs no
abstention training. 1 − P(ABSTAIN) would say nothing for the "qa" model, which never learnt the
ABSTAIN string and gives it almost no probability everywhere; a mean per-token log-probability
would rate a long answer whose first word is a guess as sure as its certain later words. An answer
that is ABSTAIN is never counted as answered, whatever its confidence.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from minilm import model as model_module, train as train_module
from minilm.posttrain import finetune as finetune_module
from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint, save_checkpoint
from minilm.apps.classify import continuation_log_prob
from minilm.course_model import CourseModel, course_model
from minilm.data import END_OF_TEXT, Story, StoryWorld
from minilm.data.stories import questions
from minilm.posttrain.finetune import finetune, finetune_config
from minilm.model import GPT
from minilm.presets import choose, current_preset
from minilm.apps.task_eval import first_line, generate_answers, normalize_answer, wilson_interval
from minilm.apps.tasks import INSTRUCTIONS, PROMPTS, Example, story_examples, story_split
from minilm.train import TrainConfig

ABSTAIN = "I don't know"  # the right answer to a question the story does not answer


def words_of(text: str) -> set[str]:
    """The words of a text (letters only), to check whether a name or an object occurs in it."""
    return set(re.findall(r"[A-Za-z]+", text))


def unanswerable_questions(story: Story, rng: random.Random, world: StoryWorld) -> list[tuple[str, str]]:
    """Questions worded exactly as `questions(plot)` words them, about a name and an object of `world`
    that the story does not contain, each paired with ABSTAIN.

    The stand-ins are drawn with `rng`: a name that is neither hero nor friend and an object other
    than the story's, neither of them anywhere in the text. The story's own question list is asked
    of a plot with the stand-ins in place of the hero and the object (and a random find verb); the
    questions that mention a stand-in are kept ("Who is the story about?" mentions neither).
    """
    plot, present = story.plot, words_of(story.text)
    names = [n for n in world.words["names"] if n not in (plot["hero"], plot["friend"]) and n not in present]
    things = [t for t in world.words["objects"] if t != plot["thing"] and t not in present]
    if not names or not things:
        raise ValueError(f"the world has no {'name' if not names else 'object'} this story leaves out; "
                         f"use a world with at least 3 names and 2 objects.")
    name, thing = rng.choice(names), rng.choice(things)
    stand_in = dict(plot, hero=name, thing=thing, find_verb=rng.choice(world.words["find_verbs"]))
    return [(question, ABSTAIN) for question, _ in questions(stand_in) if words_of(question) & {name, thing}]


def qa_example(story: Story, question: str, answer: str) -> Example:
    """One question about a story in chapter 6's "qa" prompt format (minilm.apps.tasks.PROMPTS)."""
    fields = {"story": story.text, "question": question}
    return Example("qa", PROMPTS["qa"].format(**fields), " " + answer, INSTRUCTIONS["qa"].format(**fields))


def unanswerable_examples(stories: Sequence[Story], n: int, seed: int,
                          world: StoryWorld | None = None) -> list[Example]:
    """`n` QA examples whose answer is ABSTAIN: one random unanswerable question per story, the
    stories taken in turn (and again from the first once all have had one)."""
    if n > 0 and not stories:
        raise ValueError(f"asked for {n} unanswerable questions about no stories; pass at least one story.")
    world, rng = world or StoryWorld(), random.Random(seed)
    examples = []
    for index in range(n):
        story = stories[index % len(stories)]
        examples.append(qa_example(story, *rng.choice(unanswerable_questions(story, rng, world))))
    return examples


def abstention_examples(stories: Sequence[Story], share_unanswerable: float, seed: int,
                        world: StoryWorld | None = None) -> list[Example]:
    """Every answerable QA example of the stories (chapter 6's) plus unanswerable ones, so that
    `share_unanswerable` of the result are unanswerable (rounded to a whole count); shuffled by `seed`."""
    if not 0 <= share_unanswerable < 1:
        raise ValueError(f"share_unanswerable={share_unanswerable} must lie in [0, 1): some answerable "
                         f"questions are always kept.")
    answerable = story_examples("qa", stories)
    count = round(len(answerable) * share_unanswerable / (1 - share_unanswerable))
    examples = answerable + unanswerable_examples(stories, count, seed, world)
    random.Random(seed).shuffle(examples)
    return examples


# ---- the two fine-tuned models ----------------------------------------------------------------

@dataclass(frozen=True)
class AbstentionSizes:
    """How many stories the abstention experiment learns from and is tested on, and how long it tunes."""

    train_stories: int  # stories whose questions fine-tune both models
    validation_stories: int  # other stories, for the validation loss during fine-tuning
    test_stories: int  # held-out stories the test questions are about
    test_questions: int  # answerable test questions, and as many unanswerable ones
    share_unanswerable: float  # share of "qa+abstain"'s training examples that are unanswerable
    steps: int  # fine-tuning steps of each model (the same for both: a fair comparison)
    seed: int = 8  # the split, the question draws and the fine-tuning batches


# cpu: chapter 6's 2400 "qa" steps at batch 16; measured on 2 CPU cores, 1500 steps of the tiny model
# took 45 s and 2700 took 80 s, so each fine-tune takes about 72 s. Fewer (1500) leave "qa+abstain"
# abstaining on half the answerable questions: it learns the ABSTAIN string before when to use it.
ABSTENTION_SIZES = {
    "smoke": AbstentionSizes(train_stories=30, validation_stories=4, test_stories=8, test_questions=8,
                             share_unanswerable=0.3, steps=8),
    "cpu": AbstentionSizes(train_stories=400, validation_stories=20, test_stories=200, test_questions=200,
                           share_unanswerable=0.3, steps=2400),
    "gpu": AbstentionSizes(train_stories=3000, validation_stories=100, test_stories=500, test_questions=500,
                           share_unanswerable=0.3, steps=6000),
}


@dataclass
class AbstentionModels:
    """The two fine-tuned models, their tokenizer, and the held-out test questions."""

    models: dict[str, GPT]  # "qa" (answerable questions only) and "qa+abstain", in eval mode
    tokenizer: object  # the course tokenizer
    answerable: list[Example]  # held-out questions the story answers
    unanswerable: list[Example]  # held-out questions it does not (answer ABSTAIN)


def examples_digest(examples: Sequence[Example]) -> str:
    """A SHA-256 of the examples, for a cache key (the examples themselves would bloat artifact.json)."""
    return hashlib.sha256(json.dumps([asdict(e) for e in examples]).encode()).hexdigest()


def fine_tuned(name: str, course: CourseModel, train_examples: Sequence[Example],
               validation_examples: Sequence[Example], config: TrainConfig) -> GPT:
    """The course model fine-tuned on the examples with `config`: trained once, then loaded from the cache."""
    def build(folder: Path) -> None:
        tuned = finetune(course.model, course.tokenizer, train_examples, validation_examples, config)
        save_checkpoint(folder, tuned.model, train_config=asdict(config), step=config.steps,
                        history=tuned.history, tokenizer=course.tokenizer)

    inputs = {"start": course.checkpoint_dir.name, "finetune": asdict(config),
              "train": examples_digest(train_examples), "validation": examples_digest(validation_examples)}
    folder = cached_artifact(f"abstention-{name.replace('+', '-')}", inputs, build,
                             code=(finetune_module, train_module, model_module))
    return load_checkpoint(folder, next(course.model.parameters()).device).model


def abstention_models(preset: str | None = None, device=None) -> AbstentionModels:
    """Fine-tune the course model twice ("qa", "qa+abstain"): once per preset, then from the cache."""
    preset = preset or current_preset()
    sizes = choose(ABSTENTION_SIZES, preset)
    course = course_model(preset, device)
    world = StoryWorld()
    stories, test_stories = story_split(world, sizes.train_stories + sizes.validation_stories, sizes.test_stories,
                                        seed=sizes.seed, exclude=course.corpus["train"]["text"])
    validation, train = stories[:sizes.validation_stories], stories[sizes.validation_stories:]
    share = sizes.share_unanswerable
    data = {"qa": (story_examples("qa", train), story_examples("qa", validation)),
            "qa+abstain": (abstention_examples(train, share, sizes.seed, world),
                           abstention_examples(validation, share, sizes.seed + 1, world))}
    config = finetune_config("qa", preset, steps=sizes.steps, warmup_steps=max(1, sizes.steps // 10),
                             eval_every=max(1, sizes.steps // 5), seed=sizes.seed)
    models = {name: fine_tuned(name, course, *examples, config) for name, examples in data.items()}
    answerable = random.Random(sizes.seed).sample(story_examples("qa", test_stories), sizes.test_questions)
    unanswerable = unanswerable_examples(test_stories, sizes.test_questions, sizes.seed + 2, world)
    return AbstentionModels(models, course.tokenizer, answerable, unanswerable)


# ---- measuring: hallucination, abstention, coverage -------------------------------------------

def is_abstention(answer: str) -> bool:
    """True when an answer says ABSTAIN (after chapter 6's answer normalisation)."""
    return normalize_answer(answer) == normalize_answer(ABSTAIN)


def greedy_answers(model, tokenizer, examples: Sequence[Example]) -> list[str]:
    """The model's greedy answer to each example (first line, stripped), as chapter 6 scores them."""
    if not examples:
        raise ValueError("no examples to answer; pass at least one question.")
    longest = max(len(tokenizer.encode(answer)) for answer in [" " + ABSTAIN, *(e.answer for e in examples)])
    raw = generate_answers(model, tokenizer, [e.prompt for e in examples], 2 * longest + 1)
    return [first_line(answer) for answer in raw]


def rate_row(asked: str, rate: str, count: int, n: int) -> dict:
    """One row of the report: which questions, which rate, count of n, the share and its 95% Wilson interval."""
    low, high = wilson_interval(count, n)
    return {"questions": asked, "rate": rate, "count": count, "n": n, "share": count / n, "low": low, "high": high}


def abstention_report(model, tokenizer, answerable: Sequence[Example], unanswerable: Sequence[Example]) -> list[dict]:
    """Rows (questions, rate, count, n, share, low, high) for the model's greedy answers:
    answerable — accuracy (exact match) and abstained; unanswerable — hallucinated (anything but
    ABSTAIN) and abstained. Each share comes with its 95% Wilson interval."""
    if not answerable or not unanswerable:
        raise ValueError("pass at least one answerable and one unanswerable question.")
    on_answerable = greedy_answers(model, tokenizer, answerable)
    on_unanswerable = greedy_answers(model, tokenizer, unanswerable)
    right = sum(normalize_answer(p) == normalize_answer(e.answer) for p, e in zip(on_answerable, answerable))
    abstained = sum(map(is_abstention, on_answerable))
    declined = sum(map(is_abstention, on_unanswerable))
    n, m = len(answerable), len(unanswerable)
    return [rate_row("answerable", "accuracy", right, n), rate_row("answerable", "abstained", abstained, n),
            rate_row("unanswerable", "hallucinated", m - declined, m),
            rate_row("unanswerable", "abstained", declined, m)]


def answer_confidence(model, tokenizer, prompt: str, answer: str) -> float:
    """P(the model writes " " + answer and then ends): exp of the total log-probability of the answer."""
    return math.exp(continuation_log_prob(model, tokenizer, prompt, " " + answer + END_OF_TEXT))


@dataclass
class CoverageCurve:
    """Answer only when confident: one point per threshold, the most confident answers first."""

    threshold: np.ndarray  # (points,) answer when confidence >= threshold (and the answer is not ABSTAIN)
    coverage: np.ndarray  # (points,) share of the answerable questions answered
    accuracy: np.ndarray  # (points,) share of those answers that are right
    hallucination: np.ndarray  # (points,) share of the unanswerable questions answered anyway


def coverage_curve(model, tokenizer, answerable: Sequence[Example], unanswerable: Sequence[Example]) -> CoverageCurve:
    """Sweep a confidence threshold over every answer's confidence (see the module docstring)."""
    if not answerable or not unanswerable:
        raise ValueError("pass at least one answerable and one unanswerable question.")
    examples = list(answerable) + list(unanswerable)
    answers = greedy_answers(model, tokenizer, examples)
    confidence = np.array([answer_confidence(model, tokenizer, e.prompt, a) for e, a in zip(examples, answers)])
    offered = np.array([not is_abstention(a) for a in answers])  # (examples,)
    correct = np.array([normalize_answer(a) == normalize_answer(e.answer) for e, a in zip(examples, answers)])
    is_answerable = np.arange(len(examples)) < len(answerable)  # (examples,)
    thresholds = np.unique(confidence[offered])[::-1]  # (points,) highest first
    if not len(thresholds):
        thresholds = np.array([np.inf])  # the model abstains everywhere: one point, nothing answered
    answered = offered & (confidence[None, :] >= thresholds[:, None])  # (points, examples)
    on_answerable = answered & is_answerable
    count = on_answerable.sum(axis=1)  # (points,)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, (on_answerable & correct).sum(axis=1) / count, np.nan)
    return CoverageCurve(threshold=thresholds, coverage=count / len(answerable), accuracy=accuracy,
                         hallucination=(answered & ~is_answerable).sum(axis=1) / len(unanswerable))
