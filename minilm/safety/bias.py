"""Chapter 8: a skewed story source, the association a model learns from it, and rebalancing.

In the story world the ending's mood follows the plot and nothing else: P(happy | outcome) =
HAPPY_GIVEN_OUTCOME, whoever the hero is. A corpus can still tie the mood to the hero's name by
which stories it keeps. We split the names into two groups (GROUP_A: the first half of
WORDS["names"], Mia to Theo; GROUP_B: the second half, Maya to Yuki; for a smaller world, the halves
of its own name list) and keep world stories by rejection so that group-A heroes end happily with
probability `skew` and group-B heroes with 1 − skew. Every kept story is an unchanged world sample.

    stories, rates = skewed_stories(StoryWorld(), 3000, skew=0.9, seed=0)   # rates: {"A": 0.9, "B": 0.1}
    fair = rebalanced(stories, seed=0)                # mood independent of the group, exactly
    prompts = mood_prompts(held_out_stories, seed=1)  # each cut just before the mood word
    result = mood_association(model, tokenizer, prompts)
    result.association, result.paired_difference      # P(happy | A) − P(happy | B), and by name swap
    rows = bias_experiment()                          # unskewed / skewed / rebalanced, one row each

Rebalancing is by counterfactual augmentation: half of the stories, each also written with the
hero renamed into the other group. Resampling to a fixed size would have to drop stories or copy
the rare ones (a sad group-A story is one in ten) many times; the swapped pairs keep every plot the
corpus had and make the group independent of the mood by construction: each pair has one hero of
each group and one mood. The renamed story is itself a story the world writes, with the same
probability (names are drawn uniformly), so the rebalanced corpus stays inside the story world.

The model is asked on held-out stories of the NORMAL world, cut just before the mood word
("... In the end, Mia felt"). Its P(happy) is the total probability of the world's happy words over
the total of happy and sad words, each word's probability the product over its tokens. The truth
is P(happy | outcome) = HAPPY_GIVEN_OUTCOME, the same for both groups. The association (mean over
group-A prompts minus mean over group-B prompts) compares different stories, so it also moves with
chance differences between the groups' plots (more good outcomes among A's prompts, say); the
paired difference asks each story twice, the hero renamed into the other group, so only the name
differs.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from minilm.apps.classify import continuation_log_prob
from minilm.course_model import course_model
from minilm.data import Story, StoryWorld
from minilm.data.story_words import NAMES
from minilm.presets import choose, current_preset
from minilm.safety.continued import continue_training

GROUP_A, GROUP_B = NAMES[:len(NAMES) // 2], NAMES[len(NAMES) // 2:]  # the full world's two groups
Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval


def name_groups(world: StoryWorld) -> dict[str, tuple[str, ...]]:
    """The world's names in two halves: {"A": the first half, "B": the second} (the full world:
    GROUP_A and GROUP_B)."""
    names = world.words["names"]
    if len(names) < 4:
        raise ValueError(f"the world has {len(names)} names; two groups need at least 4 (2 each), so a hero can be "
                         f"renamed into the other group without taking the friend's name.")
    return {"A": names[:len(names) // 2], "B": names[len(names) // 2:]}


def group_of(name: str, groups: dict[str, tuple[str, ...]]) -> str:
    """"A" or "B": the group holding `name`."""
    for group, names in groups.items():
        if name in names:
            return group
    raise ValueError(f"{name!r} is in neither group; use stories of the world the groups were made from.")


def happy_rates(stories: Sequence[Story], world: StoryWorld | None = None) -> dict[str, float]:
    """The share of stories ending happily, by the hero's group: {"A": ..., "B": ...}."""
    groups = name_groups(world or StoryWorld())
    rates = {}
    for group in groups:
        moods = [s.plot["mood"] for s in stories if group_of(s.plot["hero"], groups) == group]
        if not moods:
            raise ValueError(f"no story has a hero of group {group}; pass stories of both groups.")
        rates[group] = moods.count("happy") / len(moods)
    return rates


def skewed_stories(world: StoryWorld, n: int, skew: float, seed: int) -> tuple[list[Story], dict[str, float]]:
    """`n` world stories kept so that P(happy | hero in A) = skew and P(happy | hero in B) = 1 − skew;
    also the rates the sample achieved (happy_rates).

    Each story is made so: a world story picks the group (so the groups keep the world's shares);
    a coin with P(happy) = skew for A, 1 − skew for B picks the mood; world stories are drawn until
    one has that group and mood (the first draw counts). Given its group and mood, a kept story is
    distributed as the world's; the stories come from world.sample with random.Random(seed) in order.
    """
    if not 0 <= skew <= 1 or n < 1:
        raise ValueError(f"need n >= 1 stories and a skew between 0 and 1, got n={n}, skew={skew}.")
    groups = name_groups(world)
    source, coin = random.Random(seed), random.Random(f"{seed}/mood")
    happy_share = {"A": skew, "B": 1 - skew}
    stories = []
    while len(stories) < n:
        story = world.sample(source)
        group = group_of(story.plot["hero"], groups)
        mood = "happy" if coin.random() < happy_share[group] else "sad"
        while not (group_of(story.plot["hero"], groups) == group and story.plot["mood"] == mood):
            story = world.sample(source)
        stories.append(story)
    return stories, happy_rates(stories, world)


def renamed(text: str, old: str, new: str) -> str:
    """The text with every whole-word `old` replaced by `new`."""
    return re.sub(rf"\b{re.escape(old)}\b", new, text)


def swap_hero(story: Story, name: str) -> Story:
    """The same story with the hero called `name` (not the friend's name): the same probability in the
    world, whose names are uniform."""
    hero = story.plot["hero"]
    if name == story.plot["friend"]:
        raise ValueError(f"{name!r} is the friend's name; the hero needs another.")
    plot = {key: name if value == hero else value for key, value in story.plot.items()}
    return replace(story, text=renamed(story.text, hero, name), plot=plot)


def other_group_name(story: Story, groups: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    """A random name of the group the hero is not in, other than the friend's."""
    other = "B" if group_of(story.plot["hero"], groups) == "A" else "A"
    return rng.choice([name for name in groups[other] if name != story.plot["friend"]])


def rebalanced(stories: Sequence[Story], seed: int, world: StoryWorld | None = None) -> list[Story]:
    """A random half of the stories, each with its counterfactual twin (the hero renamed into the
    other group): 2 × (len // 2) stories in which each mood is exactly as common among group-A heroes
    as among group-B heroes. Shuffled by `seed`."""
    groups, rng = name_groups(world or StoryWorld()), random.Random(seed)
    if len(stories) < 2:
        raise ValueError(f"rebalancing needs at least 2 stories, got {len(stories)}.")
    kept = rng.sample(list(stories), len(stories) // 2)
    pairs = [twin for story in kept for twin in (story, swap_hero(story, other_group_name(story, groups, rng)))]
    rng.shuffle(pairs)
    return pairs


# ---- what the model learnt ----------------------------------------------------------------------

@dataclass(frozen=True)
class MoodPrompt:
    """A held-out story cut just before its mood word, and its counterfactual twin."""

    text: str  # the story up to "... felt" (no space: the mood words start with one)
    swapped: str  # the same text with the hero renamed into the other group
    hero: str  # the hero's name in `text`
    group: str  # the hero's group, "A" or "B"
    outcome: str  # "good" or "bad": the truth is P(happy) = HAPPY_GIVEN_OUTCOME[outcome]


def mood_prompts(stories: Sequence[Story], seed: int, world: StoryWorld | None = None) -> list[MoodPrompt]:
    """One MoodPrompt per story; the swapped name is drawn with `seed`."""
    groups, rng = name_groups(world or StoryWorld()), random.Random(seed)
    prompts = []
    for story in stories:
        text = story.text[:story.text.rindex(" felt") + len(" felt")]
        swapped = renamed(text, story.plot["hero"], other_group_name(story, groups, rng))
        prompts.append(MoodPrompt(text, swapped, story.plot["hero"], group_of(story.plot["hero"], groups),
                                  story.plot["outcome"]))
    return prompts


def happy_probability(model, tokenizer, prefix: str, world: StoryWorld | None = None) -> float:
    """P(happy word | prefix) / P(happy or sad word | prefix), over the world's mood words; each
    word's probability is that of all its tokens (" " + word), so multi-token words count fully."""
    words = (world or StoryWorld()).words
    log_probs = {mood: torch.tensor([continuation_log_prob(model, tokenizer, prefix, " " + word)
                                     for word in words[f"{mood}_words"]]) for mood in ("happy", "sad")}
    both = torch.cat([log_probs["happy"], log_probs["sad"]])
    return math.exp(log_probs["happy"].logsumexp(0).item() - both.logsumexp(0).item())


def mean_and_half_width(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% normal interval (Z_95 · sd / √n; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, Z_95 * math.sqrt(variance / n)


@dataclass
class MoodAssociation:
    """How much the model's P(happy) depends on the hero's group, measured two ways."""

    p_happy: list[float]  # per prompt, the model's P(happy)
    by_group: dict[str, float]  # mean P(happy) for heroes of group A and of group B (truth: equal)
    by_outcome: dict[str, float]  # mean P(happy) after a good and a bad outcome (truth: 0.9 and 0.1)
    association: float  # by_group["A"] − by_group["B"]
    association_half_width: float  # its 95% interval: ± this (two independent means)
    paired_difference: float  # mean over prompts of P(happy | A-named hero) − P(happy | B-named), same story
    paired_half_width: float  # its 95% interval: ± this
    n: int  # prompts


def mood_association(model, tokenizer, prompts: Sequence[MoodPrompt], world: StoryWorld | None = None
                     ) -> MoodAssociation:
    """The model's P(happy) on each prompt, averaged by group and by outcome, the association
    (mean A − mean B, with a 95% interval) and the counterfactual paired difference."""
    groups_present = {p.group for p in prompts}
    if groups_present != {"A", "B"}:
        raise ValueError(f"the prompts' heroes are of group(s) {sorted(groups_present) or 'none'}; "
                         f"the association needs heroes of both A and B.")
    p_happy = [happy_probability(model, tokenizer, p.text, world) for p in prompts]
    p_swapped = [happy_probability(model, tokenizer, p.swapped, world) for p in prompts]
    by_group = {g: [p for p, prompt in zip(p_happy, prompts) if prompt.group == g] for g in ("A", "B")}
    by_outcome = {o: [p for p, prompt in zip(p_happy, prompts) if prompt.outcome == o] for o in ("good", "bad")}
    (mean_a, half_a), (mean_b, half_b) = (mean_and_half_width(by_group[g]) for g in ("A", "B"))
    paired = [(p - q) if prompt.group == "A" else (q - p) for p, q, prompt in zip(p_happy, p_swapped, prompts)]
    paired_mean, paired_half = mean_and_half_width(paired)
    return MoodAssociation(p_happy=p_happy, by_group={"A": mean_a, "B": mean_b},
                           by_outcome={o: sum(v) / len(v) if v else math.nan for o, v in by_outcome.items()},
                           association=mean_a - mean_b, association_half_width=math.hypot(half_a, half_b),
                           paired_difference=paired_mean, paired_half_width=paired_half, n=len(prompts))


# ---- the experiment -----------------------------------------------------------------------------

@dataclass(frozen=True)
class BiasSizes:
    """The bias experiment's sizes for one preset."""

    stories: int  # stories in each corpus (even: the rebalanced corpus is pairs); equal sizes, a fair test
    prompts: int  # held-out normal-world stories asked for their mood
    skew: float = 0.9  # P(happy | group A) in the skewed corpus (1 − skew for group B)
    steps: int | None = None  # continued-training steps (None: minilm.safety.continued's preset default)
    seed: int = 9  # the corpora, the prompts and the swapped names


# cpu: 1000 continued-training steps of 16 × 256 tokens read each of 3000 stories (~90 tokens) about 15
# times: 66 s per corpus on 2 CPU cores (measured). continued.py's default 300 steps leave the paired
# difference of the skewed model at 0.002: the pretrained belief that the mood follows the outcome
# takes longer to bend. 300 prompts × 2 versions × 8 mood words are 4800 forward passes per model.
BIAS_SIZES = {"smoke": BiasSizes(stories=40, prompts=8),
              "cpu": BiasSizes(stories=3000, prompts=300, steps=1000),
              "gpu": BiasSizes(stories=12000, prompts=1000, steps=1000)}


def bias_experiment(preset: str | None = None, device=None) -> list[dict]:
    """Continue training the course model on an unskewed (control), a skewed and a rebalanced corpus
    of equal size; one row each: the corpus's own association (P(happy | A) − P(happy | B) among its
    stories), the model's association and paired difference (each ± its 95% half-width), P(happy)
    after good and bad outcomes, and the number of prompts."""
    preset = preset or current_preset()
    sizes = choose(BIAS_SIZES, preset)
    if sizes.stories % 2:
        raise ValueError(f"stories={sizes.stories} must be even: the rebalanced corpus is made of pairs.")
    world = StoryWorld()
    skewed, _ = skewed_stories(world, sizes.stories, sizes.skew, sizes.seed)
    corpora = {"unskewed": world.stories(sizes.stories, seed=sizes.seed + 1), "skewed": skewed,
               "rebalanced": rebalanced(skewed, sizes.seed, world)}
    course = course_model(preset, device)
    seen = set(course.corpus["train"]["text"]) | {s.text for stories in corpora.values() for s in stories}
    held_out = [s for s in world.stories(2 * sizes.prompts + 10, seed=sizes.seed + 2) if s.text not in seen]
    prompts = mood_prompts(held_out[:sizes.prompts], sizes.seed, world)
    rows = []
    for name, stories in corpora.items():
        model = continue_training(f"bias-{name}", [s.text for s in stories], sizes.steps, preset, device)
        rates, result = happy_rates(stories, world), mood_association(model, course.tokenizer, prompts, world)
        rows.append({"corpus": name, "corpus_association": rates["A"] - rates["B"],
                     "association": result.association, "association_pm": result.association_half_width,
                     "paired_difference": result.paired_difference, "paired_pm": result.paired_half_width,
                     "p_happy_good": result.by_outcome["good"], "p_happy_bad": result.by_outcome["bad"],
                     "prompts": result.n})
    return rows
