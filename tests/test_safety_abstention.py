"""Abstention: unanswerable questions that really are unanswerable, worded as the world's own; rates
and coverage curves of a scripted model whose answers and confidences are planted."""
import math
import random
import re
from types import SimpleNamespace

import pytest
import torch
from scipy.stats import binomtest

from minilm.data import END_OF_TEXT, StoryConfig, StoryWorld
from minilm.data.story_words import WORDS
from minilm.generate import generate
from minilm.safety.abstention import (ABSTAIN, abstention_examples, abstention_models, abstention_report,
                                      coverage_curve, unanswerable_examples, unanswerable_questions)
from minilm.apps.tasks import Example, story_examples
from minilm.tokenizer import CharTokenizer

WORLDS = [StoryWorld(), StoryWorld(StoryConfig(max_words=3)),
          StoryWorld(StoryConfig(words={"names": 3, "objects": 2}))]


def shape(question: str, names, objects) -> str:
    """The question with every name, object and find verb masked: the template it was written from."""
    words = re.findall(r"[A-Za-z]+|[^A-Za-z]+", question)
    return "".join("<name>" if w in names else "<object>" if w in objects else
                   "<verb>" if w in WORDS["find_verbs"] else w for w in words)


@pytest.mark.parametrize("world", WORLDS, ids=["full", "three-words", "three-names-two-objects"])
def test_every_unanswerable_question_is_unanswerable_and_worded_as_the_worlds_own(world):
    names, objects = set(world.words["names"]), set(world.words["objects"])
    stories = world.stories(300, seed=81)
    own_shapes = {shape(q, names, objects) for story in stories for q, _ in story.facts.qa}
    asked_shapes, rng = set(), random.Random(0)
    for story in stories:
        text_words = re.findall(r"[A-Za-z]+", story.text)
        own_questions = {q for q, _ in story.facts.qa}
        for question, answer in unanswerable_questions(story, rng, world):
            assert answer == ABSTAIN and question not in own_questions
            mentioned = [w for w in re.findall(r"[A-Za-z]+", question) if w in names | objects]
            assert len(mentioned) == 1, question  # about one stand-in, a name or an object
            entity = mentioned[0]
            assert entity not in text_words  # nowhere in the story...
            assert entity not in (story.plot["hero"], story.plot["friend"], story.plot["thing"])  # ...nor its plot
            asked_shapes.add(shape(question, names, objects))
    assert asked_shapes <= own_shapes
    assert len(asked_shapes) == 7 == len(own_shapes) - 1  # all but "Who is the story about?"


def test_a_world_with_no_spare_name_is_refused():
    world = StoryWorld(StoryConfig(words={"names": 2}))
    with pytest.raises(ValueError, match="name"):
        unanswerable_questions(world.stories(1, seed=0)[0], random.Random(0), world)


def test_abstention_examples_mix_the_stories_own_questions_with_the_requested_share():
    stories = StoryWorld().stories(12, seed=82)
    answerable = story_examples("qa", stories)
    for share in (0.0, 0.25, 0.5, 0.8):
        examples = abstention_examples(stories, share, seed=3)
        unanswerable = [e for e in examples if e.answer == " " + ABSTAIN]
        assert len(unanswerable) == round(len(answerable) * share / (1 - share))
        assert sorted(e.prompt for e in examples if e.answer != " " + ABSTAIN) == sorted(e.prompt for e in answerable)
        texts = {story.text for story in stories}
        for example in unanswerable:  # chapter 6's qa prompt format, written out here
            story, question = re.fullmatch(r"(.*)\nQuestion: (.*)\nAnswer:", example.prompt, re.S).groups()
            assert story in texts and question.endswith("?") and example.task == "qa"
    with pytest.raises(ValueError, match="share_unanswerable"):
        abstention_examples(stories, 1.0, seed=3)


def test_unanswerable_examples_take_the_stories_in_turn():
    stories = StoryWorld().stories(3, seed=83)
    examples = unanswerable_examples(stories, 7, seed=0)
    assert [e.prompt.split("\nQuestion:")[0] for e in examples] == [stories[i % 3].text for i in range(7)]


# ---- a scripted model: planted answers, planted confidences ------------------------------------

class Scripted(torch.nn.Module):
    """Answers each known prompt with a planted answer: its first token with a planted probability p
    (the rest spread evenly over the other tokens, each far below p), every later token and the end
    of text with probability 1, so P(answer, then end) = p exactly and greedy decoding writes it."""

    def __init__(self, tokenizer, script: dict[str, tuple[str, float]]):
        super().__init__()
        self.config = SimpleNamespace(context_length=2048, vocab_size=tokenizer.vocab_size)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the stub a device
        end = tokenizer.special_tokens[END_OF_TEXT]
        self.script = {tuple(tokenizer.encode(prompt)): (tokenizer.encode(" " + answer) + [end], p)
                       for prompt, (answer, p) in script.items()}

    def forward(self, idx, targets=None, cache=None):
        batch, time = idx.shape
        vocab = self.config.vocab_size
        probs = torch.full((batch, time, vocab), 1 / vocab)  # (batch, time, vocab)
        for b, row in enumerate(idx.tolist()):
            for prompt, (answer, p) in self.script.items():
                if tuple(row[:len(prompt)]) != prompt:
                    continue
                for written, token in enumerate(answer):  # position t predicts the answer's token `written`
                    t = len(prompt) - 1 + written
                    if t < time:
                        probs[b, t] = (1 - p) / (vocab - 1) if written == 0 else 0.0
                        probs[b, t, token] = p if written == 0 else 1.0
        return probs.log(), None

    def generate(self, idx, max_new_tokens, **options):
        return generate(self, idx, max_new_tokens, use_cache=False, **options)


def planted(answerable_plan, unanswerable_plan):
    """Examples, a char tokenizer and the scripted model answering them as planned: (answer, p) each."""
    stories = StoryWorld().stories(4, seed=84)
    answerable = story_examples("qa", stories)[:len(answerable_plan)]
    unanswerable = unanswerable_examples(stories, len(unanswerable_plan), seed=1)
    plan = {}
    for example, (answer, p) in zip(answerable, answerable_plan):
        plan[example.prompt] = (example.answer.strip() if answer == "right" else answer, p)
    for example, (answer, p) in zip(unanswerable, unanswerable_plan):
        plan[example.prompt] = (answer, p)
    texts = [e.prompt for e in answerable + unanswerable] + [a for a, _ in plan.values()]
    tokenizer = CharTokenizer.train(texts)
    return Scripted(tokenizer, plan), tokenizer, answerable, unanswerable


def test_report_rates_equal_the_planted_counts():
    answerable_plan = [("right", 0.9), ("right", 0.5), ("Nobody", 0.7), (ABSTAIN, 0.8), ("right", 0.6),
                       ("i don't know.", 0.4)]  # 3 right, 1 wrong, 2 abstentions (normalised)
    unanswerable_plan = [("Tom", 0.7), (ABSTAIN, 0.9), ("red", 0.6), (ABSTAIN, 0.5), ("Leo", 0.3)]
    model, tokenizer, answerable, unanswerable = planted(answerable_plan, unanswerable_plan)
    rows = {(r["questions"], r["rate"]): r for r in abstention_report(model, tokenizer, answerable, unanswerable)}
    expected = {("answerable", "accuracy"): (3, 6), ("answerable", "abstained"): (2, 6),
                ("unanswerable", "hallucinated"): (3, 5), ("unanswerable", "abstained"): (2, 5)}
    assert set(rows) == set(expected)
    for key, (count, n) in expected.items():
        row = rows[key]
        assert (row["count"], row["n"]) == (count, n) and row["share"] == pytest.approx(count / n)
        interval = binomtest(count, n).proportion_ci(method="wilson")
        assert (row["low"], row["high"]) == pytest.approx((interval.low, interval.high), abs=1e-3)


def test_coverage_curve_of_planted_confidences_matches_the_hand_computed_one():
    answerable_plan = [("right", 0.9), ("Nobody", 0.6), ("right", 0.4), (ABSTAIN, 0.8)]
    unanswerable_plan = [("Tom", 0.7), (ABSTAIN, 0.95), ("Leo", 0.3)]
    model, tokenizer, answerable, unanswerable = planted(answerable_plan, unanswerable_plan)
    curve = coverage_curve(model, tokenizer, answerable, unanswerable)
    # abstentions never count as answered; the rest answer once the threshold falls to their p
    assert curve.threshold.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.4, 0.3])
    assert curve.coverage.tolist() == pytest.approx([1 / 4, 1 / 4, 2 / 4, 3 / 4, 3 / 4])
    assert curve.accuracy.tolist() == pytest.approx([1, 1, 1 / 2, 2 / 3, 2 / 3])
    assert curve.hallucination.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3])


def test_a_model_that_always_abstains_has_an_empty_curve():
    model, tokenizer, answerable, unanswerable = planted([(ABSTAIN, 0.9)], [(ABSTAIN, 0.8)])
    curve = coverage_curve(model, tokenizer, answerable, unanswerable)
    assert curve.coverage.tolist() == [0.0] and curve.hallucination.tolist() == [0.0]
    assert math.isnan(curve.accuracy[0])


def test_empty_question_lists_are_refused():
    model, tokenizer, answerable, _ = planted([("right", 0.9)], [])
    with pytest.raises(ValueError, match="unanswerable"):
        abstention_report(model, tokenizer, answerable, [])
    with pytest.raises(ValueError, match="unanswerable"):
        coverage_curve(model, tokenizer, [], [Example("qa", "x", " y")])


def test_smoke_models_are_cached_and_measured():
    run = abstention_models("smoke", device="cpu")
    assert set(run.models) == {"qa", "qa+abstain"}
    assert all(not model.training for model in run.models.values())
    qa, abstain = (list(run.models[name].parameters()) for name in ("qa", "qa+abstain"))
    assert any(not torch.equal(a, b) for a, b in zip(qa, abstain))  # different training data
    assert len(run.answerable) == len(run.unanswerable) == 8
    assert all(e.answer == " " + ABSTAIN for e in run.unanswerable)
    assert all(e.answer != " " + ABSTAIN for e in run.answerable)
    again = abstention_models("smoke", device="cpu")  # from the cache: the same weights
    assert all(torch.equal(a, b) for a, b in zip(qa, again.models["qa"].parameters()))
    rows = abstention_report(run.models["qa+abstain"], run.tokenizer, run.answerable, run.unanswerable)
    on_unanswerable = [r["count"] for r in rows if r["questions"] == "unanswerable"]
    assert sum(on_unanswerable) == 8  # hallucinated + abstained: every question one or the other
    curve = coverage_curve(run.models["qa"], run.tokenizer, run.answerable, run.unanswerable)
    assert len(curve.threshold) == len(curve.coverage) == len(curve.hallucination) >= 1
    assert all(0 <= c <= 1 for c in curve.coverage) and list(curve.threshold) == sorted(curve.threshold, reverse=True)
