"""Story labels: token kinds against a labelling done word by word, probed facts against the plot,
features against a forward pass done block by block, and name-swap pairs against a text rewrite."""
import re

import numpy as np
import pytest
import torch

from minilm.bpe_train import GPT2_SPLIT
from minilm.data.stories import END_OF_TEXT, StoryConfig, StoryWorld
from minilm.data.story_words import WORDS
from minilm.interpret.story_labels import (FACTS, TOKEN_KINDS, features_at, fact_positions, name_swap_pair,
                                           split_by_story, token_kinds)
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import BPETokenizer, CharTokenizer

GOOD_OUTCOMES = ("helped, and they found it", "fixed it with", "caught it", "got it back", "and they played")
BAD_OUTCOMES = ("but it was gone", "but it was no use", "but it flew", "ran away with it", "played alone")


@pytest.fixture(scope="module")
def stories():
    return StoryWorld().stories(200, seed=0)


@pytest.fixture(scope="module")
def bpe(stories):
    return BPETokenizer.train([story.text for story in stories], vocab_size=400)  # names take 1 to 5 tokens


@pytest.fixture(scope="module")
def chars(stories):
    return CharTokenizer.train([story.text for story in stories])


def labels_word_by_word(story) -> list[str | None]:
    """Each character's kind (None: no fact word), from the words of each sentence and the plot."""
    plot, text = story.plot, story.text
    labels = [None] * len(text)
    sentences = list(re.finditer(r"[^.]+\.", text))
    for number, sentence in enumerate(sentences):
        words = list(re.finditer(r"[A-Za-z]+", sentence.group()))
        for i, word in enumerate(words):
            w, following = word.group(), words[i + 1].group() if i + 1 < len(words) else ""
            previous = words[i - 1].group() if i else ""
            if w in (plot["hero"], plot["friend"]):
                kind = "name"
            elif w == plot["thing"] or (w == plot["color"] and following == plot["thing"]):
                kind = "object"
            elif number == len(sentences) - 1 and previous == "felt":
                kind = "mood"
            elif number == 0 and i >= len(words) - 2:  # "... lived in a snowy valley."
                kind = "place"
            elif w in WORDS["kinds"]:
                kind = "kind"
            else:
                continue
            start = sentence.start() + word.start()
            labels[start: start + len(w)] = [kind] * len(w)
    return labels


def tokens_by_bytes(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The ids of each pre-token encoded on its own, and each token's characters from its byte length."""
    pieces = GPT2_SPLIT.findall(text) if isinstance(tokenizer, BPETokenizer) else list(text)
    ids = [token for piece in pieces for token in tokenizer.encode(piece)]
    ends = np.cumsum([len(tokenizer.token_bytes(token)) for token in ids])  # stories are ASCII: bytes = characters
    return ids, [(int(end) - len(tokenizer.token_bytes(token)), int(end)) for token, end in zip(ids, ends)]


@pytest.mark.parametrize("tokenizer_name", ["bpe", "chars"])
@pytest.mark.parametrize("world", [StoryWorld(), StoryWorld(StoryConfig(words={"colors": 3, "place_adjectives": 3}))])
def test_token_kinds_match_a_labelling_made_word_by_word(request, stories, tokenizer_name, world):
    tokenizer = request.getfixturevalue(tokenizer_name)
    default_world = world.config == StoryConfig()  # the small one writes "green" as a color and a place
    sample = stories[:100] if default_world else world.stories(100, seed=1)
    for story in sample:
        ids, spans = tokens_by_bytes(tokenizer, story.text)
        assert ids == tokenizer.encode(story.text)
        assert "".join(tokenizer.decode([token]) for token in ids) == story.text
        characters = labels_word_by_word(story)
        expected = [next((kind for kind in TOKEN_KINDS if kind in characters[start:end]), "other")
                    for start, end in spans]
        kinds = token_kinds(tokenizer, story)
        assert kinds == expected
        assert set(kinds) == set(TOKEN_KINDS)  # every story names, places and finds something, and ends in a mood
    if not default_world:
        assert any(story.plot["color"] == "green" == story.plot["place"].split()[0] for story in sample)


def sentence_prefix(text: str, count: int) -> str:
    """The text up to the end of its `count`-th sentence (sentences end with "." and one space)."""
    end = -1
    for _ in range(count):
        end = text.index(".", end + 1)
    return text[: end + 1]


@pytest.mark.parametrize("fact", FACTS)
def test_probed_facts_are_the_plot_at_the_promised_positions(stories, bpe, fact):
    data = fact_positions(bpe, stories, fact)
    eot = bpe.special_tokens[END_OF_TEXT]
    per_story = 3 if fact == "solved" else 1
    assert len(data.positions) == len(data.labels) == len(data.keys) == per_story * len(stories)
    assert data.story_index.tolist() == [i for i in range(len(stories)) for _ in range(per_story)]
    for (index, position), label, key in zip(data.positions, data.labels, data.keys):
        story, ids = stories[index], data.token_ids[index]
        assert ids == [eot] + bpe.encode(story.text) and key == (ids[position - 1], ids[position])
        before = bpe.decode(ids[1: position + 1])  # the story up to and including the probed token
        plot, sentence_count = story.plot, story.text.count(".")
        if fact == "hero":
            assert before.endswith(",") and before.count(".") == sentence_count - 1
            assert story.text[len(before):].startswith(f" {plot['hero']} felt ")
            assert data.classes[label] == plot["hero"]
        elif fact == "place":
            assert before == sentence_prefix(story.text, 2) and before.endswith(plot["friend"] + ".")
            assert data.classes[label] == plot["place"].split()[-1]
        elif fact == "mood":
            assert before.endswith(f"{plot['hero']} felt")
            assert story.text[len(before):].startswith(f" {plot['mood_word']},")
            assert data.classes[label] == plot["mood"]
        else:
            which = [p for i, p in data.positions if i == index].index(position)  # 0, 1, 2: trouble, outcome, ending
            assert before == sentence_prefix(story.text, sentence_count - 2 + which)
            last_sentence = before.rsplit(". ", 1)[-1]
            if which == 1:  # the outcome sentence says how the trouble ended
                assert any(phrase in last_sentence for phrase in (GOOD_OUTCOMES if label else BAD_OUTCOMES))
            assert label == (which > 0 and plot["outcome"] == "good")
            assert data.classes[label] == ("solved" if label else "unsolved")
    assert len(set(data.labels.tolist())) > 1


def test_split_by_story_keeps_every_story_on_one_side(stories, bpe):
    data = fact_positions(bpe, stories[:40], "solved")
    train, test = split_by_story(data, test_share=0.25, seed=3)
    assert sorted(train.tolist() + test.tolist()) == list(range(len(data.labels)))
    train_stories, test_stories = set(data.story_index[train]), set(data.story_index[test])
    assert not train_stories & test_stories and len(test_stories) == 10
    again, _ = split_by_story(data, test_share=0.25, seed=3)
    assert np.array_equal(train, again)


def residuals_block_by_block(model: GPT, ids: list[int]) -> list[torch.Tensor]:
    """The n_layer + 1 residual streams (time, n_embd) of one sequence, running the blocks by hand."""
    idx = torch.tensor([ids])  # (1, time)
    x = model.token_embedding(idx)  # (1, time, n_embd)
    if model.positions is not None:
        x = x + model.positions(len(ids), 0)
    rope = model.rope(len(ids), 0) if model.rope is not None else None
    streams = [x[0]]
    for block in model.blocks:
        x = block(x, rope, None)  # (1, time, n_embd)
        streams.append(x[0])
    return streams


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_features_are_the_residual_stream_of_each_sequence_run_alone(family):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context_length=32, n_layer=2, n_head=2, n_embd=16, family=family,
                          dropout=0.2))
    model.train()  # features_at must switch dropout off, and leave the model as it found it
    rng = np.random.default_rng(0)
    sequences = [rng.integers(50, size=rng.integers(3, 30)).tolist() for _ in range(7)]
    positions = [(s, int(rng.integers(len(sequences[s])))) for s in rng.integers(7, size=20)] + [(6, 0)]
    features = features_at(model, sequences, positions, layers=[0, 2, 1], batch_size=3)
    assert model.training and sorted(features) == [0, 1, 2]
    model.eval()
    with torch.no_grad():
        reference = [residuals_block_by_block(model, ids) for ids in sequences]
    for layer, matrix in features.items():
        assert matrix.shape == (len(positions), 16) and matrix.dtype == torch.float32
        expected = torch.stack([reference[s][layer][p] for s, p in positions])  # (examples, n_embd)
        torch.testing.assert_close(matrix, expected, rtol=1e-5, atol=1e-5)
    everything = features_at(model, sequences, positions[:4])
    assert sorted(everything) == [0, 1, 2]
    torch.testing.assert_close(everything[1], features[1][:4], rtol=1e-5, atol=1e-5)


def renamed(text: str, old: str, new: str) -> str:
    """The text with the whole word `old` replaced, splitting it into words and the rest."""
    return "".join(new if piece == old else piece for piece in re.split(r"([A-Za-z]+)", text))


@pytest.mark.parametrize("tokenizer_name", ["bpe", "chars"])
def test_name_swap_pairs_differ_only_at_the_hero_and_decode_to_the_renamed_story(request, stories, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    made = skipped = 0
    for story in stories[:60]:
        hero, friend = story.plot["hero"], story.plot["friend"]
        for new in [name for name in WORDS["names"][::3] if name not in (hero, friend)]:
            swap = name_swap_pair(tokenizer, story, new)
            if swap is None:
                assert len(tokenizer.encode(" " + new)) != len(tokenizer.encode(" " + hero))
                skipped += 1
                continue
            made += 1
            assert tokenizer.decode(swap.clean) == END_OF_TEXT + story.text
            assert tokenizer.decode(swap.corrupted) == END_OF_TEXT + renamed(story.text, hero, new)
            assert len(swap.clean) == len(swap.corrupted)
            differ = [p for p, (a, b) in enumerate(zip(swap.clean, swap.corrupted)) if a != b]
            assert differ and set(differ) <= set(swap.name_positions)
            runs = np.split(np.array(swap.name_positions), np.flatnonzero(np.diff(swap.name_positions) > 1) + 1)
            assert [tokenizer.decode(swap.clean[p] for p in run).strip() for run in runs] == \
                [hero] * len(re.findall(rf"\b{hero}\b", story.text))
            assert swap.last_mention == runs[-1].tolist()
            after = tokenizer.decode(swap.clean[swap.last_mention[-1] + 1:])
            assert after.startswith(" felt ")  # the last mention is the ending's "Mia felt ..."
            position, clean_token, corrupted_token = swap.answer
            assert position + 1 in swap.last_mention and clean_token != corrupted_token
            assert swap.clean[: position + 1] != swap.corrupted[: position + 1]  # earlier mentions were renamed
            assert (swap.clean[position + 1], swap.corrupted[position + 1]) == (clean_token, corrupted_token)
    assert made > 20
    assert tokenizer_name == "chars" or skipped > 0  # some BPE names take more tokens than others


@pytest.mark.parametrize("call, message", [
    (lambda s, t: fact_positions(t, s, "friend"), "not one the stories label"),
    (lambda s, t: fact_positions(t, [], "mood"), "at least one story"),
    (lambda s, t: fact_positions(CharTokenizer.train([s[0].text], special_tokens=()), s[:1], "mood"), "endoftext"),
    (lambda s, t: name_swap_pair(t, s[0], s[0].plot["friend"]), "already in the story"),
    (lambda s, t: name_swap_pair(t, s[0], "It"), "already in the story"),
    (lambda s, t: name_swap_pair(t, s[0], s[0].plot["hero"]), "not the hero"),
    (lambda s, t: name_swap_pair(t, s[0], "Anna Lee"), "one word of letters"),
    (lambda s, t: split_by_story(fact_positions(t, s[:4], "mood"), test_share=1.0, seed=0), "share in"),
    (lambda s, t: features_at(GPT(GPTConfig(vocab_size=9, n_layer=1, n_embd=8, n_head=2)), [[1, 2]], [(0, 2)]),
     "does not exist"),
    (lambda s, t: features_at(GPT(GPTConfig(vocab_size=9, n_layer=1, n_embd=8, n_head=2)), [[1, 2]], [(0, 1)],
                              layers=[2]), "from 0"),
])
def test_bad_input_is_refused_with_a_clear_message(stories, bpe, call, message):
    with pytest.raises(ValueError, match=message):
        call(stories, bpe)
