"""A learned bias: a corpus skewed by rejection (unchanged world stories, requested rates), its exact
rebalancing, the association measured on a planted stub, and a tiny model that learns the skew."""
import math
import random
import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from scipy.stats import norm

from minilm.data import StoryConfig, StoryWorld
from minilm.data.stories import GOOD_OUTCOME_ODDS, HAPPY_GIVEN_OUTCOME, TROUBLE_WEIGHTS, TROUBLES
from minilm.data.story_words import NAMES
from minilm.posttrain.finetune import encode_example, finetune_encoded
from minilm.model import GPT, GPTConfig
from minilm.safety.bias import (GROUP_A, GROUP_B, Z_95, bias_experiment, happy_probability, mood_association,
                                mood_prompts, name_groups, rebalanced, skewed_stories)
from minilm.tokenizer import BPETokenizer, CharTokenizer
from minilm.train import TrainConfig

TINY = StoryWorld(StoryConfig(max_words=1, words={"names": 4, "qualities": 2}, max_middle=0))


def group(name, names=NAMES):
    return "A" if names.index(name) < len(names) // 2 else "B"


def test_groups_are_the_halves_of_the_name_list():
    assert GROUP_A + GROUP_B == NAMES and len(GROUP_A) == len(GROUP_B) == 20
    assert name_groups(TINY) == {"A": ("Mia", "Tom"), "B": ("Lily", "Ben")}
    with pytest.raises(ValueError, match="at least 4"):
        name_groups(StoryWorld(StoryConfig(words={"names": 3})))
    assert Z_95 == pytest.approx(norm.ppf(0.975), abs=1e-6)


def test_skewed_stories_reach_the_requested_rates_with_unchanged_world_stories():
    world, n, skew = StoryWorld(), 4000, 0.9
    stories, rates = skewed_stories(world, n, skew, seed=5)
    assert len(stories) == n
    heroes = Counter(group(s.plot["hero"]) for s in stories)
    happy = Counter(group(s.plot["hero"]) for s in stories if s.plot["mood"] == "happy")
    for g, target in (("A", skew), ("B", 1 - skew)):
        share = happy[g] / heroes[g]
        assert rates[g] == pytest.approx(share)
        assert abs(share - target) < 4 * math.sqrt(target * (1 - target) / heroes[g])
    assert abs(heroes["A"] / n - 0.5) < 4 * math.sqrt(0.25 / n)  # the groups keep the world's shares
    # given group and mood, the rest is the world's: P(good | happy) by Bayes from the world's tables
    p_good = sum(w * GOOD_OUTCOME_ODDS[t] for t, w in zip(TROUBLES, TROUBLE_WEIGHTS))
    happy_good = p_good * HAPPY_GIVEN_OUTCOME["good"]
    good_given_happy = happy_good / (happy_good + (1 - p_good) * HAPPY_GIVEN_OUTCOME["bad"])
    happy_stories = [s for s in stories if s.plot["mood"] == "happy"]
    share_good = sum(s.plot["outcome"] == "good" for s in happy_stories) / len(happy_stories)
    spread = math.sqrt(good_given_happy * (1 - good_given_happy) / len(happy_stories))
    assert abs(share_good - good_given_happy) < 4 * spread
    # each story is a world sample, unchanged, in the order world.sample drew them from Random(seed)
    source, matched = random.Random(5), 0
    while matched < n:
        drawn = world.sample(source)
        if drawn.text == stories[matched].text:
            assert drawn.log_prob == stories[matched].log_prob and drawn.plot == stories[matched].plot
            matched += 1


def test_skewed_stories_refuse_a_skew_outside_zero_one():
    with pytest.raises(ValueError, match="skew"):
        skewed_stories(StoryWorld(), 10, 1.5, seed=0)


def test_rebalanced_corpus_makes_mood_and_group_independent_with_world_stories():
    skewed, _ = skewed_stories(TINY, 301, 0.95, seed=6)
    fair = rebalanced(skewed, seed=0, world=TINY)
    assert len(fair) == 300
    names = TINY.words["names"]
    counts = Counter((group(s.plot["hero"], names), s.plot["mood"]) for s in fair)
    assert counts["A", "happy"] == counts["B", "happy"] and counts["A", "sad"] == counts["B", "sad"]
    assert counts["A", "happy"] + counts["A", "sad"] == 150
    every_story = {story.text: story.log_prob for story in TINY.enumerate()}  # the whole tiny world
    twins = {}  # the story with its hero masked -> the groups of the heroes it appears with
    for story in fair:  # every story, swapped or not, is one the world writes, with the same probability
        assert every_story[story.text] == pytest.approx(story.log_prob)
        assert re.search(rf"\b{story.plot['hero']}\b felt", story.text)
        masked = re.sub(rf"\b{story.plot['hero']}\b", "<hero>", story.text)
        twins.setdefault(masked, Counter())[group(story.plot["hero"], names)] += 1
    assert all(heroes["A"] == heroes["B"] for heroes in twins.values())  # each plot once per group


# ---- the association ----------------------------------------------------------------------------

class WordTokenizer:
    """One token per word with its leading space: " happy" is a single token."""

    def __init__(self, texts):
        pieces = sorted({piece for text in texts for piece in re.findall(r" ?[^ ]+", text)})
        self.ids = {piece: i for i, piece in enumerate(pieces)}
        self.vocab_size = len(pieces)

    def encode(self, text):
        return [self.ids[piece] for piece in re.findall(r" ?[^ ]+", text)]


class PlantedMoods(torch.nn.Module):
    """Next-token probabilities planted by the group of the previous token's name: after "... Mia felt"
    (the hero's name comes just before "felt") the mood words get group A's probabilities."""

    def __init__(self, tokenizer, planted: dict[str, dict[str, float]]):
        super().__init__()
        self.config = SimpleNamespace(context_length=4096, vocab_size=tokenizer.vocab_size)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.a_ids = torch.tensor([tokenizer.ids[" " + name] for name in GROUP_A if " " + name in tokenizer.ids])
        rows = []
        for g in ("A", "B"):
            words = planted[g]
            rest = (1 - sum(words.values())) / (tokenizer.vocab_size - len(words))  # every other token
            probs = torch.full((tokenizer.vocab_size,), rest)
            for word, p in words.items():
                probs[tokenizer.ids[" " + word]] = p
            rows.append(probs.log())
        self.log_probs = torch.stack(rows)  # (2, vocab): group A, group B

    def forward(self, idx, targets=None, cache=None):
        previous = torch.cat([idx[:, :1], idx[:, :-1]], dim=1)  # (batch, time): the token before each one
        in_b = (~torch.isin(previous, self.a_ids)).long()  # (batch, time)
        return self.log_probs[in_b], None  # (batch, time, vocab)


def test_mood_association_of_planted_probabilities_is_the_hand_computed_one():
    stories = StoryWorld().stories(60, seed=7)
    prompts = mood_prompts(stories, seed=0)
    moods = [" " + w for w in ("happy", "glad", "proud", "cheerful", "sad", "upset", "lonely", "gloomy")]
    tokenizer = WordTokenizer([p.text for p in prompts] + [p.swapped for p in prompts] + moods)
    planted = {"A": {"happy": 0.3, "glad": 0.1, "proud": 0.1, "cheerful": 0.05,
                     "sad": 0.05, "upset": 0.05, "lonely": 0.02, "gloomy": 0.03},
               "B": {"happy": 0.02, "glad": 0.03, "proud": 0.01, "cheerful": 0.04,
                     "sad": 0.2, "upset": 0.1, "lonely": 0.1, "gloomy": 0.1}}
    p_a, p_b = 0.55 / 0.7, 0.1 / 0.6  # happy words over happy + sad words, by hand
    result = mood_association(PlantedMoods(tokenizer, planted), tokenizer, prompts)
    assert result.by_group == pytest.approx({"A": p_a, "B": p_b}, rel=1e-5)
    assert result.association == pytest.approx(p_a - p_b, rel=1e-5)
    assert result.paired_difference == pytest.approx(p_a - p_b, rel=1e-5)  # every swap flips A and B
    assert result.paired_half_width == pytest.approx(0, abs=1e-5) and result.n == 60
    in_a = Counter((p.outcome, p.group) for p in prompts)
    for outcome in ("good", "bad"):
        by_hand = (in_a[outcome, "A"] * p_a + in_a[outcome, "B"] * p_b) / (in_a[outcome, "A"] + in_a[outcome, "B"])
        assert result.by_outcome[outcome] == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="both A and B"):
        mood_association(PlantedMoods(tokenizer, planted), tokenizer, [p for p in prompts if p.group == "A"])


def test_multi_token_mood_words_count_every_token():
    prompt = mood_prompts(StoryWorld().stories(1, seed=8), seed=0)[0]
    tokenizer = CharTokenizer.train([prompt.text, " happy glad proud cheerful sad upset lonely gloomy"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=512, n_layer=1, n_head=2, n_embd=16)).eval()

    def word_probability(word):  # one forward pass per character: P(c_k | prefix, c_1 .. c_k-1), multiplied
        ids, total = tokenizer.encode(prompt.text), 1.0
        for token in tokenizer.encode(" " + word):
            with torch.no_grad():
                total *= model(torch.tensor([ids]))[0][0, -1].double().softmax(-1)[token].item()
            ids = ids + [token]
        return total

    happy = sum(word_probability(w) for w in ("happy", "glad", "proud", "cheerful"))
    sad = sum(word_probability(w) for w in ("sad", "upset", "lonely", "gloomy"))
    assert happy_probability(model, tokenizer, prompt.text) == pytest.approx(happy / (happy + sad), rel=1e-4)


def test_a_tiny_model_learns_the_skew_and_not_after_rebalancing():
    """Trained from scratch on each corpus's mood words (the story up to "felt" -> the mood word), a
    few seconds each: the skewed corpus teaches the name, the rebalanced one cannot."""
    skewed, _ = skewed_stories(TINY, 200, 0.95, seed=0)
    fair = rebalanced(skewed, seed=0, world=TINY)
    tokenizer = BPETokenizer.train([s.text for s in TINY.stories(200, seed=5)], 420)
    end = tokenizer.special_tokens["<|endoftext|>"]
    prompts = mood_prompts(TINY.stories(40, seed=7), seed=0, world=TINY)
    config = TrainConfig(steps=100, batch_size=16, context_length=128, lr=1e-2, min_lr=1e-3, warmup_steps=10,
                         eval_every=0, weight_decay=0.0)
    paired = {}
    for name, stories in (("skewed", skewed), ("rebalanced", fair)):
        cut = mood_prompts(stories, seed=0, world=TINY)
        pairs = [encode_example(tokenizer, p.text, " " + s.plot["mood_word"]) for p, s in zip(cut, stories)]
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=128, n_layer=1, n_head=2, n_embd=32))
        tuned = finetune_encoded(model, {"train": pairs, "validation": pairs[:2]}, end, config).model
        paired[name] = mood_association(tuned, tokenizer, prompts, TINY)
    assert paired["skewed"].paired_difference - paired["skewed"].paired_half_width > 0.3
    assert abs(paired["rebalanced"].paired_difference) < 0.05


def test_smoke_experiment_has_one_row_per_corpus():
    rows = bias_experiment("smoke", device="cpu")
    assert [r["corpus"] for r in rows] == ["unskewed", "skewed", "rebalanced"]
    by_corpus = {r["corpus"]: r for r in rows}
    assert by_corpus["rebalanced"]["corpus_association"] == 0.0  # exact: every story has its twin
    assert by_corpus["skewed"]["corpus_association"] > 0.5
    for row in rows:
        assert row["prompts"] == 8 and -1 <= row["association"] <= 1 and row["paired_pm"] >= 0
