"""The story world: a seeded stochastic grammar whose every story comes with its exact probability.

    world = StoryWorld(StoryConfig())
    story = world.sample(random.Random(0))
    story.text        # 'Long ago, a shy fox named Mia lived in a snowy valley. Mia had a friend, ...'
    story.log_prob    # natural log of the probability that the world writes exactly this text
    story.facts       # who, where, what, what happened, the mood, a summary, Q&A, a translation

How a story goes (each slot in braces is a choice, most of them uniform over a word list):

    intro      {Opening}, {a trait} {kind} {named|called} {Hero} lived in {a place-adjective} {place}.
    friend     {Hero} {had a friend, | often played with | ...} {a trait} {kind} {named|called} {Friend}.
    find       One {time}, {Hero|Friend} {found|made|...} {a color} {object} {where}.
    describe   It was {quality} and {another quality}.
    middle     zero, one or two short adventures with the object
    trouble    lost | broken | blown away | stolen | shared   (weighted)
    outcome    good or bad, with odds that depend on the trouble
    ending     {In the end|...}, {Hero} felt {mood word}, and {Friend} {reaction}.

Long-range structure a model must use attention for: the names, the object and the thief come
back sentences after they were introduced, and the ending's mood follows (90% of the time) from
whether the outcome was good.

Exactness. Every decision goes through a `Chooser` (minilm/data/choices.py), which adds the log of
its probability. The word lists never overlap where two slots touch and every sentence type starts
with its own words, so different decision sequences always give different texts; the tests list
every story of a small world and check that the texts are distinct and their probabilities sum to 1.
So `story.log_prob` is the exact log-probability of the text.

End of story and separator. A story always ends with its `ending` sentence, so once that sentence
is written the end is certain: the separator `END_OF_TEXT` written after every story in a token
stream costs 0 nats. The only uncertain event at a boundary, which story comes next, is counted in
the next story's log-probability. `corpus_entropy` counts the separator as `separator_length`
characters (default 1: one special token), so nats per character = total nats / (characters + one
per separator). Every story is at most `MAX_STORY_CHARS` = 500 characters (`StoryWorld.max_length`
computes the longest possible story), shorter than the smallest preset's context.
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field

from minilm.data.choices import (Chooser, LongestWordChooser, SamplingChooser, enumerate_runs)
from minilm.data.language import translate
from minilm.data.story_words import WORDS

END_OF_TEXT = "<|endoftext|>"  # written after every document in a token stream
MAX_STORY_CHARS = 500  # no story is longer, so each fits the smallest model context

TROUBLES = ("lost", "broken", "blown away", "stolen", "shared")
TROUBLE_WEIGHTS = (0.25, 0.2, 0.2, 0.15, 0.2)
OUTCOMES = ("good", "bad")
GOOD_OUTCOME_ODDS = {"lost": 0.5, "broken": 0.5, "blown away": 0.4, "stolen": 0.5, "shared": 0.8}
MOODS = ("happy", "sad")
HAPPY_GIVEN_OUTCOME = {"good": 0.9, "bad": 0.1}  # P(happy ending | outcome): the mood follows the plot
MIDDLE_COUNT_WEIGHTS = (0.3, 0.45, 0.25)  # zero, one or two adventures before the trouble


@dataclass(frozen=True)
class StoryConfig:
    """Which words the world may use. The default is the full world; smaller ones are for tests."""

    max_words: int | None = None  # use only the first N words of every list (None: all of them)
    words: dict[str, int] = field(default_factory=dict)  # per-list overrides of max_words, e.g. {"names": 3}
    max_middle: int = 2  # most adventure sentences between finding the object and the trouble (0-2)


@dataclass(frozen=True)
class StoryFacts:
    """What happened in a story, as labels for later tasks (QA, summaries, sentiment, translation)."""

    characters: tuple[str, str]  # (hero, friend)
    place: str  # where the hero lives, e.g. "snowy valley"
    object: str  # the thing found, with its color, e.g. "red kite"
    event: str  # the trouble: lost, broken, blown away, stolen or shared
    outcome: str  # "good" or "bad"
    mood: str  # the ending's mood: "happy" or "sad"
    summary: str  # one line
    qa: list[tuple[str, str]]  # question-answer pairs answered by the text
    translation: str  # the story in the world's made-up language


@dataclass(frozen=True)
class Story:
    text: str
    log_prob: float  # natural log of the probability of exactly this text
    plot: dict = field(repr=False, compare=False)  # the decisions the facts are made from

    @functools.cached_property
    def facts(self) -> StoryFacts:
        """The story's labels, made on first use (sampling stays fast when they are not needed)."""
        plot = self.plot
        return StoryFacts(characters=(plot["hero"], plot["friend"]), place=plot["place"],
                          object=plot["object"], event=plot["event"], outcome=plot["outcome"],
                          mood=plot["mood"], summary=summary(plot), qa=questions(plot),
                          translation=translate(self.text))


def with_article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class StoryWorld:
    """Writes stories by running the grammar with a Chooser (sampling, or enumerating every story)."""

    def __init__(self, config: StoryConfig | None = None) -> None:
        self.config = config or StoryConfig()
        if not 0 <= self.config.max_middle <= 2:
            raise ValueError(f"max_middle={self.config.max_middle}; use 0, 1 or 2 adventure sentences.")
        unknown = set(self.config.words) - set(WORDS)
        if unknown:
            raise ValueError(f"no word lists named {sorted(unknown)}; the lists are {sorted(WORDS)}.")
        self.words = {name: self._limit(name, words) for name, words in WORDS.items()}

    def _limit(self, name: str, words: tuple[str, ...]) -> tuple[str, ...]:
        count = self.config.words.get(name, self.config.max_words)
        minimum = 2 if name in ("names", "qualities") else 1  # a friend's name, a second quality
        if count is not None and count < minimum:
            raise ValueError(f"the list {name!r} needs at least {minimum} word(s), not {count}.")
        return words[:count] if count is not None else words

    # ---- public API ---------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Story:
        """One story drawn at random (reproducible from the state of `rng`)."""
        chooser = SamplingChooser(rng)
        return self._finish(self._write(chooser), chooser.log_prob)

    def stories(self, n: int, seed: int) -> list[Story]:
        """`n` stories from a generator seeded with `seed` (the same list for the same arguments)."""
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]

    def enumerate(self):
        """Every story the world can write, each once, with its exact log-probability (small worlds only)."""
        for plot, log_prob in enumerate_runs(self._write):
            yield self._finish(plot, log_prob)

    def max_length(self) -> int:
        """The length of the longest story this world can write (every structure, longest words)."""
        return max(len(" ".join(plot["sentences"])) for plot, _ in
                   enumerate_runs(self._write, LongestWordChooser))

    # ---- the grammar --------------------------------------------------------------------------
    def _write(self, c: Chooser) -> dict:
        """Run the grammar once; return the sentences and the facts needed for the labels."""
        w = self.words
        hero = c.pick(w["names"])
        friend = c.pick([name for name in w["names"] if name != hero])
        kind, thing, color = c.pick(w["kinds"]), c.pick(w["objects"]), None
        place = f"{c.pick(w['place_adjectives'])} {c.pick(w['places'])}"
        sentences = [
            f"{c.pick(w['openings'])}, {with_article(c.pick(w['traits']))} {kind} {c.pick(w['namings'])} {hero} "
            f"lived in {with_article(place)}.",
            f"{hero} {c.pick(w['friendships'])} {with_article(c.pick(w['traits']))} "
            f"{c.pick(w['kinds'])} {c.pick(w['namings'])} {friend}.",
        ]
        finder = c.pick([hero, friend])
        find_verb, color = c.pick(w["find_verbs"]), c.pick(w["colors"])
        sentences.append(f"One {c.pick(w['times'])}, {finder} {find_verb} {with_article(color)} "
                         f"{thing} {c.pick(w['wheres'])}.")
        first_quality = c.pick(w["qualities"])
        second_quality = c.pick([q for q in w["qualities"] if q != first_quality])
        sentences.append(f"It was {first_quality} and {second_quality}.")
        middle_weights = MIDDLE_COUNT_WEIGHTS[: self.config.max_middle + 1]
        for _ in range(c.pick(range(len(middle_weights)), middle_weights)):
            sentences.append(c.pick([self._carry, self._show, self._play])(c, hero, friend, thing))
        event = c.pick(TROUBLES, TROUBLE_WEIGHTS)
        owner, other = (finder, friend if finder == hero else hero)
        outcome, thief = self._trouble(c, event, owner, other, thing, sentences)
        happy = HAPPY_GIVEN_OUTCOME[outcome]
        mood = c.pick(MOODS, [happy, 1 - happy])
        mood_word = c.pick(w[f"{mood}_words"])
        sentences.append(f"{c.pick(w['ending_openers'])}, {hero} felt {mood_word}, and {friend} "
                         f"{c.pick(w[f'{mood}_reactions'])}.")
        return {"sentences": sentences, "hero": hero, "friend": friend, "kind": kind, "place": place,
                "object": f"{color} {thing}", "thing": thing, "finder": finder, "find_verb": find_verb,
                "color": color, "event": event, "outcome": outcome, "mood": mood,
                "mood_word": mood_word, "owner": owner, "other": other, "thief": thief}

    def _carry(self, c: Chooser, hero: str, friend: str, thing: str) -> str:
        w = self.words
        return (f"They {c.pick(w['adverbs'])} {c.pick(w['carry_verbs'])} the {thing} "
                f"to the {c.pick(w['landmarks'])}.")

    def _show(self, c: Chooser, hero: str, friend: str, thing: str) -> str:
        w = self.words
        return (f"{c.pick([hero, friend])} {c.pick(w['adverbs'])} showed the {thing} to "
                f"{with_article(c.pick(w['traits']))} {c.pick(w['kinds'])}.")

    def _play(self, c: Chooser, hero: str, friend: str, thing: str) -> str:
        w = self.words
        return (f"At the {c.pick(w['landmarks'])}, {c.pick([hero, friend])} "
                f"{c.pick(w['play_verbs'])} until {c.pick(w['until_times'])}.")

    def _trouble(self, c: Chooser, event: str, owner: str, other: str, thing: str,
                 sentences: list[str]) -> tuple[str, str | None]:
        """Append the trouble and its outcome (chosen after the trouble); return (outcome, thief)."""
        w, thief = self.words, None
        odds = GOOD_OUTCOME_ODDS[event]
        if event == "lost":
            sentences.append(f"But then {owner} lost the {thing} {c.pick(w['wheres'])}.")
            outcome = c.pick(OUTCOMES, [odds, 1 - odds])
            sentences.append(f"{other} {c.pick(w['adverbs'])} helped, and they found it {c.pick(w['wheres'])}."
                             if outcome == "good" else
                             f"They searched {c.pick(w['searches'])}, but it was gone.")
        elif event == "broken":
            sentences.append(f"Suddenly the {thing} {c.pick(w['fall_verbs'])} and broke into "
                             f"{c.pick(w['pieces'])} pieces.")
            outcome = c.pick(OUTCOMES, [odds, 1 - odds])
            sentences.append(f"{other} {c.pick(w['adverbs'])} fixed it with {c.pick(w['tools'])}."
                             if outcome == "good" else
                             f"{other} tried {c.pick(w['tools'])}, but it was no use.")
        elif event == "blown away":
            sentences.append(f"Then {c.pick(w['weathers'])} carried the {thing} away.")
            outcome = c.pick(OUTCOMES, [odds, 1 - odds])
            sentences.append(f"{c.pick([owner, other])} {c.pick(w['adverbs'])} caught it {c.pick(w['catches'])}."
                             if outcome == "good" else
                             f"They ran after it, but it flew {c.pick(w['flights'])}.")
        elif event == "stolen":
            thief = c.pick(w["thieves"])
            sentences.append(f"Later, {with_article(c.pick(w['thief_adjectives']))} {thief} "
                             f"{c.pick(w['grab_verbs'])} the {thing}.")
            outcome = c.pick(OUTCOMES, [odds, 1 - odds])
            sentences.append(f"{other} {c.pick(w['adverbs'])} chased the {thief} and got it back."
                             if outcome == "good" else
                             f"The {thief} ran away with it.")
        else:  # shared
            sentences.append(f"{owner} {c.pick(w['share_verbs'])} to share the {thing} with {other}.")
            outcome = c.pick(OUTCOMES, [odds, 1 - odds])
            sentences.append(f"{other} {c.pick(w['thanks'])}, and they played {c.pick(w['searches'])}."
                             if outcome == "good" else
                             f"But {other} {c.pick(w['refusals'])}, and {owner} played alone.")
        return outcome, thief

    def _finish(self, plot: dict, log_prob: float) -> Story:
        return Story(text=" ".join(plot.pop("sentences")), log_prob=log_prob, plot=plot)


EVENT_ANSWERS = {"lost": "it was lost", "broken": "it broke", "blown away": "the wind carried it away",
                 "stolen": "a {thief} stole it", "shared": "{owner} shared it with {other}"}
SUMMARIES = {
    ("lost", "good"): "{owner} lost the {object}, and {other} helped to find it",
    ("lost", "bad"): "{owner} lost the {object} and never found it",
    ("broken", "good"): "the {object} broke, and {other} fixed it",
    ("broken", "bad"): "the {object} broke, and nobody could fix it",
    ("blown away", "good"): "the wind took the {object}, but it was caught",
    ("blown away", "bad"): "the wind took the {object} away for good",
    ("stolen", "good"): "a {thief} stole the {object}, and {other} got it back",
    ("stolen", "bad"): "a {thief} stole the {object} for good",
    ("shared", "good"): "{owner} shared the {object} with {other}, who was glad",
    ("shared", "bad"): "{owner} offered to share the {object}, but {other} said no",
}


def summary(plot: dict) -> str:
    """One line: who, what happened, how it ended."""
    what_happened = SUMMARIES[plot["event"], plot["outcome"]].format(**plot)
    ending = "happily" if plot["mood"] == "happy" else "sadly"
    return f"{plot['hero']} and {plot['friend']}: {what_happened}; it ends {ending}."


def questions(plot: dict) -> list[tuple[str, str]]:
    """Question-answer pairs whose answers are spans or labels of the story."""
    hero, thing = plot["hero"], plot["thing"]
    return [
        ("Who is the story about?", hero),
        (f"Who is the friend of {hero}?", plot["friend"]),
        (f"What kind of animal or person is {hero}?", plot["kind"]),
        (f"Where did {hero} live?", f"in {with_article(plot['place'])}"),
        (f"Who {plot['find_verb']} the {thing}?", plot["finder"]),
        (f"What color was the {thing}?", plot["color"]),
        (f"What happened to the {thing}?", EVENT_ANSWERS[plot["event"]].format(**plot)),
        (f"How did {hero} feel at the end?", plot["mood_word"]),
    ]


def entropy_from_log_probs(texts: list[str], log_probs: list[float], separator_length: int = 1) -> dict:
    """The exact entropy of texts whose log-probabilities are known (see `corpus_entropy`)."""
    if not texts:
        raise ValueError("no stories: the entropy of an empty corpus is undefined; pass at least one story.")
    nats = -math.fsum(log_probs)
    characters = sum(len(text) + separator_length for text in texts)
    bytes_ = sum(len(text.encode("utf-8")) + separator_length for text in texts)
    return {"stories": len(texts), "characters": characters, "nats": nats,
            "nats_per_story": nats / len(texts), "chars_per_story": characters / len(texts),
            "nats_per_char": nats / characters, "bits_per_char": nats / characters / math.log(2),
            "bits_per_byte": nats / bytes_ / math.log(2)}


def corpus_entropy(stories: list[Story], separator_length: int = 1) -> dict[str, float]:
    """The exact entropy of a list of stories from their log-probabilities.

    This is the loss the true source itself gets on these texts: the floor a model is measured
    against. Each story is followed by one separator that costs 0 nats (the end is certain once the
    ending sentence is written) and counts as `separator_length` characters and bytes (1: one
    special token; pass len(END_OF_TEXT) to count its literal characters). Stories are ASCII, so
    bytes equal characters. Keys: stories, characters, nats, nats_per_story, chars_per_story,
    nats_per_char, bits_per_char, bits_per_byte.
    """
    return entropy_from_log_probs([s.text for s in stories], [s.log_prob for s in stories], separator_length)
