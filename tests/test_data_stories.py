"""The story world: exact probabilities (checked by listing every story), lengths, labels, the
made-up language and the entropy."""
import math
import random
import re
from collections import Counter

import pytest

from minilm.data import END_OF_TEXT, MAX_STORY_CHARS, StoryConfig, StoryWorld, corpus_entropy
from minilm.data.language import lexicon, translate
from minilm.data.story_words import NAMES, WORDS

# A small but real world: every sentence type, every trouble, outcome, mood and adventure count,
# three names (so hero, friend and finder can be confused) and two qualities; one word elsewhere.
SMALL = StoryConfig(max_words=1, words={"names": 3, "qualities": 2})
# A tiny world, small enough to check sampling frequencies against the exact probabilities.
TINY = StoryConfig(max_words=1, words={"names": 2, "qualities": 2}, max_middle=0)


@pytest.fixture(scope="module")
def small_world_stories():
    return list(StoryWorld(SMALL).enumerate())


def test_every_story_of_a_small_world_is_distinct_and_the_probabilities_sum_to_one(small_world_stories):
    texts = [story.text for story in small_world_stories]
    assert len(texts) > 10_000, "the small world should still be a real one"
    assert len(set(texts)) == len(texts), "two decision sequences wrote the same text"
    total = math.fsum(math.exp(story.log_prob) for story in small_world_stories)
    assert total == pytest.approx(1.0, abs=1e-9)
    # every structure is reached: all troubles, outcomes and moods
    events = Counter((s.facts.event, s.facts.outcome, s.facts.mood) for s in small_world_stories)
    assert len(events) == 5 * 2 * 2


def test_sampling_gives_the_enumerated_probabilities(small_world_stories):
    exact = {story.text: story.log_prob for story in small_world_stories}
    world = StoryWorld(SMALL)
    for story in world.stories(300, seed=3):
        assert story.log_prob == pytest.approx(exact[story.text], abs=1e-12)


def test_sampling_frequencies_match_the_probabilities():
    world = StoryWorld(TINY)
    exact = {story.text: math.exp(story.log_prob) for story in world.enumerate()}
    n = 40_000
    counts = Counter(story.text for story in world.stories(n, seed=1))
    assert set(counts) <= set(exact)
    for text, p in exact.items():
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(counts[text] / n - p) < 5 * sigma + 1e-4


def test_entropy_of_a_sample_approaches_the_exact_entropy_of_the_source():
    world = StoryWorld(TINY)
    enumerated = list(world.enumerate())
    probabilities = [math.exp(s.log_prob) for s in enumerated]
    exact_nats = -math.fsum(p * s.log_prob for p, s in zip(probabilities, enumerated))
    spread = math.sqrt(math.fsum(p * (s.log_prob + exact_nats) ** 2 for p, s in zip(probabilities, enumerated)))
    n = 20_000
    measured = corpus_entropy(world.stories(n, seed=2))["nats_per_story"]
    assert abs(measured - exact_nats) < 5 * spread / math.sqrt(n)


def test_entropy_counts_the_separator_as_stated():
    stories = StoryWorld().stories(50, seed=0)
    stream = "".join(story.text + END_OF_TEXT for story in stories)
    literal = corpus_entropy(stories, separator_length=len(END_OF_TEXT))
    assert literal["characters"] == len(stream)
    assert literal["bits_per_byte"] == pytest.approx(literal["nats"] / len(stream.encode()) / math.log(2))
    one_token = corpus_entropy(stories)
    assert one_token["characters"] == len(stream) - (len(END_OF_TEXT) - 1) * len(stories)
    assert one_token["nats"] == pytest.approx(-sum(s.log_prob for s in stories))
    with pytest.raises(ValueError, match="at least one story"):
        corpus_entropy([])


def test_longest_story_is_computed_exactly_and_fits_the_context(small_world_stories):
    assert StoryWorld(SMALL).max_length() == max(len(s.text) for s in small_world_stories)
    world = StoryWorld()
    longest = world.max_length()
    assert longest <= MAX_STORY_CHARS
    lengths = [len(s.text) for s in world.stories(3000, seed=5)]
    assert max(lengths) <= longest
    assert 150 <= sum(lengths) / len(lengths) <= 450


def test_stories_repeat_for_a_seed_and_differ_between_seeds():
    world = StoryWorld()
    assert [s.text for s in world.stories(20, seed=7)] == [s.text for s in world.stories(20, seed=7)]
    assert [s.text for s in world.stories(20, seed=7)] != [s.text for s in world.stories(20, seed=8)]
    rng = random.Random(4)
    assert world.sample(rng).text != world.sample(rng).text


def test_names_come_back_and_the_mood_follows_the_outcome():
    stories = StoryWorld().stories(2000, seed=11)
    agree = 0
    for story in stories:
        hero, friend = story.facts.characters
        sentences = story.text.split(". ")
        assert hero in sentences[0] and hero in sentences[-1] and friend in sentences[-1]
        assert story.text.count(story.facts.object.split()[1]) >= 2  # the object is named again
        agree += (story.facts.outcome == "good") == (story.facts.mood == "happy")
    assert 0.8 < agree / len(stories) < 0.98  # mostly follows, so a model must read the plot


def test_facts_are_answered_by_the_text():
    for story in StoryWorld().stories(300, seed=12):
        facts = story.facts
        assert facts.mood in ("happy", "sad")
        assert facts.object in story.text and facts.place in story.text
        assert facts.characters[0] != facts.characters[1]
        assert "\n" not in facts.summary and facts.characters[0] in facts.summary
        for question, answer in facts.qa:
            assert question.endswith("?")
            if not question.startswith("What happened"):
                assert answer in story.text


def test_vocabulary_is_small_and_every_word_has_a_translation():
    words = lexicon()
    assert 250 <= len(words) <= 600
    assert len(set(words.values())) == len(words), "two English words share a made-up word"
    seen = set()
    for story in StoryWorld().stories(2000, seed=13):
        seen.update(w.lower() for w in re.findall(r"[A-Za-z]+", story.text) if w not in NAMES)
    assert seen <= set(words)


def test_translation_follows_the_word_order_rule():
    w = lexicon()
    english = "One morning, Mia found a red kite near the river."
    # articles vanish, the adjective follows its noun, the verb closes its clause
    expected = (f"{w['one'].capitalize()} {w['morning']}, Mia {w['kite']} {w['red']} {w['near']} "
                f"{w['river']} {w['found']}.")
    assert translate(english) == expected
    second = "They quickly carried the kite to the lake. It was big and shiny."
    assert translate(second) == (f"{w['they'].capitalize()} {w['quickly']} {w['kite']} {w['to']} {w['lake']} "
                                 f"{w['carried']}. {w['it'].capitalize()} {w['big']} {w['and']} {w['shiny']} "
                                 f"{w['was']}.")


def test_bad_configs_say_what_to_do():
    with pytest.raises(ValueError, match="no word lists named"):
        StoryWorld(StoryConfig(words={"colours": 2}))
    with pytest.raises(ValueError, match="at least 2"):
        StoryWorld(StoryConfig(words={"names": 1}))
    with pytest.raises(ValueError, match="max_middle"):
        StoryWorld(StoryConfig(max_middle=3))
    assert set(WORDS) >= {"names", "objects", "colors"}
