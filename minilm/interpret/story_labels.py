"""What the story world knows, token by token: labels for probes and pairs for activation patching.

The story world (minilm.data.stories) writes every story from a plot it keeps (`story.plot`), so
for any token we know for sure which fact it spells and, at any point of the story, which facts
have been written so far. That is ground truth no human labelling could give:

    kinds = token_kinds(tokenizer, story)                  # "name", "object", ... per token
    data = fact_positions(tokenizer, stories, "mood")      # one (story, position, label) per example
    train_index, test_index = split_by_story(data, test_share=0.25, seed=0)
    features = features_at(model, data.token_ids, data.positions)   # {layer: (examples, n_embd)}
    swap = name_swap_pair(tokenizer, story, "Zoe")          # the story, and it with the hero renamed

Token kinds. Each token's characters are found by decoding the tokens one by one; a token gets
the kind of the fact words its characters overlap (the space before a word belongs to no word):
    name    every mention of the hero's or the friend's name
    object  every mention of the thing found, and its color ("a red kite" in the find sentence)
    mood    the ending's mood word ("Mia felt happy")
    place   the place where the hero lives, adjective and noun ("in a snowy valley")
    kind    an animal or person word (WORDS["kinds"]): the hero's and the friend's, and the one
            shown the object; the grammar writes these words nowhere else (a thief is "other")
    other   everything else
Words are matched where the grammar writes them, so "green" in "a green valley" is place, not
object, and "house" in "behind the house" is not the place.

Probed facts (`fact_positions`). Every sequence starts with END_OF_TEXT, as each story does in
the training stream, so position p is token p − 1 of the story text.
    hero    the hero's name (WORDS["names"], 40 classes), at the "," just before it in the ending
            ("In the end, Mia felt happy"): the next token is the hero's name, which the model can
            only know by looking back (chapter 4's second drop: copying names)
    place   the place noun (WORDS["places"], 20 classes; the 240 adjective-noun pairs would leave a
            handful of examples each), at the "." ending the second sentence ("Mia had a friend,
            a shy owl named Leo."): the place was written one sentence back and never comes again
    mood    happy or sad, at the last token of " felt", just before the mood word: can the model
            already tell how the story ends?
    solved  0 or 1, at the "." of each of the last three sentences: the trouble, the outcome and
            the ending (minilm.data.stories._trouble always writes the outcome right after the
            trouble, and the ending follows). The label is 1 once the outcome sentence of a good
            outcome has been written (its end and the ending's), else 0: three examples a story
`ProbeData.keys` holds, per example, the pair (token before, token at) the position, the key of
the control task (see minilm.interpret.probes).

Activation patching (`name_swap_pair`): the story and the same story with every mention of the
hero renamed, of equal length when the two names take as many tokens (else None). Patch the clean
run's residual stream into the corrupted run one (layer, position) at a time
(minilm.interpret.internals.patch_residual) and read the logit difference of the two names at
their last mention (`NameSwap.answer`): where it swings back shows where the name is carried.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from minilm.data.stories import END_OF_TEXT, MOODS, Story
from minilm.data.story_words import WORDS
from minilm.interpret.internals import record_internals
from minilm.apps.tasks import sentences

TOKEN_KINDS = ("name", "object", "mood", "place", "kind", "other")
FACTS = ("hero", "place", "mood", "solved")
FACT_CLASSES = {"hero": WORDS["names"], "place": WORDS["places"], "mood": MOODS, "solved": ("unsolved", "solved")}
KIND_WORDS = re.compile(r"\b(" + "|".join(WORDS["kinds"]) + r")\b")


@dataclass(frozen=True)
class ProbeData:
    """Examples for a probe: where to read the model, and the truth there."""

    fact: str  # one of FACTS
    classes: tuple[str, ...]  # label i means classes[i]
    token_ids: list[list[int]]  # one sequence per story: END_OF_TEXT, then the story's tokens
    positions: list[tuple[int, int]]  # (story index, token position) of each example
    labels: np.ndarray  # (examples,) int64, indices into classes
    keys: list[tuple[int, int]]  # (token before, token at) each position: the control task's key

    @property
    def story_index(self) -> np.ndarray:
        """(examples,) the story each example comes from."""
        return np.array([story for story, _ in self.positions], dtype=np.int64)


@dataclass(frozen=True)
class NameSwap:
    """A story and the same story with the hero renamed, token for token."""

    clean: list[int]  # END_OF_TEXT, then the story's tokens
    corrupted: list[int]  # the same with every mention of the hero renamed; equal length
    name_positions: list[int]  # every token position of every mention of the hero (the same in both)
    last_mention: list[int]  # the token positions of the hero's last mention, in the ending sentence

    @property
    def answer(self) -> tuple[int, int, int]:
        """(position, clean token, corrupted token): the logits at `position` predict the first token
        of the last mention where the two names differ, so logit[clean] − logit[corrupted] there says
        which name the model expects."""
        target = next(p for p in self.last_mention if self.clean[p] != self.corrupted[p])
        return target - 1, self.clean[target], self.corrupted[target]


def token_spans(tokenizer, ids: Sequence[int]) -> list[tuple[int, int]]:
    """The (start, end) characters of each token in decode(ids), found by decoding them one by one."""
    pieces = [tokenizer.decode([token]) for token in ids]
    if "".join(pieces) != tokenizer.decode(ids):
        raise ValueError("these tokens do not decode one by one to the text they decode to together (a character "
                         "split across tokens?); token kinds need tokens that each hold whole characters.")
    ends = np.cumsum([len(piece) for piece in pieces], dtype=np.int64)
    return [(int(end) - len(piece), int(end)) for piece, end in zip(pieces, ends)]


def _matches(pattern: str, text: str) -> list[tuple[int, int]]:
    """The character spans of every group of every match of `pattern`."""
    return [match.span(group) for match in re.finditer(pattern, text) for group in range(1, len(match.groups()) + 1)]


def fact_word_spans(story: Story) -> dict[str, list[tuple[int, int]]]:
    """For each token kind but "other", the character spans of its words in story.text."""
    plot, text = story.plot, story.text
    names = "|".join(re.escape(name) for name in (plot["hero"], plot["friend"]))
    thing = re.escape(plot["thing"])
    return {"name": _matches(rf"\b({names})\b", text),
            "object": _matches(rf"\b({thing})\b", text) + _matches(rf"\b({re.escape(plot['color'])}) {thing}\b", text),
            "mood": _matches(rf" felt ({re.escape(plot['mood_word'])}),", text),
            "place": _matches(r"lived in an? ({}) ({})\.".format(*map(re.escape, plot["place"].split())), text),
            "kind": _matches(KIND_WORDS.pattern, text)}


def _kinds_of_spans(spans: list[tuple[int, int]], words: dict[str, list[tuple[int, int]]]) -> list[str]:
    """Each token's kind: the first of TOKEN_KINDS with a word its characters overlap, else "other"."""
    return [next((kind for kind in TOKEN_KINDS[:-1] if any(s < end and start < e for s, e in words[kind])),
                 "other") for start, end in spans]


def token_kinds(tokenizer, story: Story) -> list[str]:
    """The kind (TOKEN_KINDS) of every token of tokenizer.encode(story.text)."""
    spans = token_spans(tokenizer, tokenizer.encode(story.text))
    return _kinds_of_spans(spans, fact_word_spans(story))


def _end_of_text(tokenizer) -> int:
    if END_OF_TEXT not in tokenizer.special_tokens:
        raise ValueError(f"the tokenizer has no {END_OF_TEXT!r} token to start each story with, as the training "
                         f"stream does; train it with special_tokens=({END_OF_TEXT!r},).")
    return tokenizer.special_tokens[END_OF_TEXT]


def _token_at(spans: list[tuple[int, int]], char: int) -> int:
    """The index of the token holding character `char`."""
    return next(i for i, (start, end) in enumerate(spans) if start <= char < end)


def _probe_points(story: Story, spans: list[tuple[int, int]], fact: str) -> list[tuple[int, int]]:
    """(token index in the story text, label) of each example `fact` takes from one story."""
    plot, parts = story.plot, sentences(story.text)
    ends = np.cumsum([len(part) + 1 for part in parts]) - 2  # the character of each sentence's final "."
    if fact == "hero":
        ending_start = len(story.text) - len(parts[-1])
        name_start = ending_start + parts[-1].index(f", {plot['hero']} felt") + 2
        return [(_token_at(spans, name_start - 2), WORDS["names"].index(plot["hero"]))]  # the ","
    if fact == "place":
        return [(_token_at(spans, ends[1]), WORDS["places"].index(plot["place"].split()[-1]))]
    if fact == "mood":
        (mood_start, _), = fact_word_spans(story)["mood"]
        return [(_token_at(spans, mood_start - 2), MOODS.index(plot["mood"]))]  # the "t" of " felt"
    solved = int(plot["outcome"] == "good")
    return [(_token_at(spans, ends[-3]), 0), (_token_at(spans, ends[-2]), solved),
            (_token_at(spans, ends[-1]), solved)]


def fact_positions(tokenizer, stories: Sequence[Story], fact: str) -> ProbeData:
    """The examples of one fact (FACTS) for a probe, from every story; see the module docstring."""
    if fact not in FACTS:
        raise ValueError(f"fact={fact!r} is not one the stories label; use one of {', '.join(FACTS)}.")
    if not stories:
        raise ValueError("no stories: pass at least one story to take probe examples from.")
    end_of_text = _end_of_text(tokenizer)
    token_ids, positions, labels, keys = [], [], [], []
    for index, story in enumerate(stories):
        ids = [end_of_text] + tokenizer.encode(story.text)
        for token, label in _probe_points(story, token_spans(tokenizer, ids[1:]), fact):
            position = token + 1  # after END_OF_TEXT
            positions.append((index, position))
            labels.append(label)
            keys.append((ids[position - 1], ids[position]))
        token_ids.append(ids)
    return ProbeData(fact, tuple(FACT_CLASSES[fact]), token_ids, positions, np.array(labels, dtype=np.int64), keys)


def split_by_story(data: ProbeData, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, test_index) of the examples, with every story's examples on one side only."""
    stories = np.unique(data.story_index)
    if not 0 < test_share < 1 or len(stories) < 2:
        raise ValueError(f"test_share={test_share} of {len(stories)} stories: use a share in (0, 1) and at least "
                         f"two stories.")
    test_count = min(len(stories) - 1, max(1, round(test_share * len(stories))))
    test_stories = np.random.default_rng(seed).choice(stories, size=test_count, replace=False)
    in_test = np.isin(data.story_index, test_stories)  # (examples,)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


@torch.no_grad()
def features_at(model, token_ids_list: Sequence[Sequence[int]], positions: Sequence[tuple[int, int]],
                layers: Sequence[int] | None = None, batch_size: int = 32) -> dict[int, torch.Tensor]:
    """{layer: (examples, n_embd)} the residual stream (record_internals' `residual[layer]`: 0 is
    the embeddings, l the output of block l − 1) at each (sequence index, position), float32 on the CPU.

    Sequences run in batches, padded on the right: attention is causal, so no position reads the
    padding after it. The model runs in eval mode (no dropout) and is put back as it was.
    """
    layers = list(range(model.config.n_layer + 1)) if layers is None else [int(layer) for layer in layers]
    if not layers or not all(0 <= layer <= model.config.n_layer for layer in layers):
        raise ValueError(f"layers={layers}: give residual streams from 0 (the embeddings) to {model.config.n_layer}.")
    wanted = defaultdict(list)  # sequence index -> [(example, position)]
    for example, (sequence, position) in enumerate(positions):
        if not 0 <= sequence < len(token_ids_list) or not 0 <= position < len(token_ids_list[sequence]):
            raise ValueError(f"example {example} asks for position {position} of sequence {sequence}, which does "
                             f"not exist ({len(token_ids_list)} sequences given).")
        wanted[sequence].append((example, position))
    features = {layer: torch.zeros(len(positions), model.config.n_embd) for layer in layers}
    device, training = next(model.parameters()).device, model.training
    model.eval()
    try:
        chosen = sorted(wanted)
        for first in range(0, len(chosen), batch_size):
            batch = chosen[first: first + batch_size]
            idx = torch.zeros(len(batch), max(len(token_ids_list[s]) for s in batch), dtype=torch.long)  # (batch, time)
            for row, sequence in enumerate(batch):
                idx[row, : len(token_ids_list[sequence])] = torch.as_tensor(token_ids_list[sequence])
            with record_internals(model, attention=False) as seen:
                model(idx.to(device))
            rows, examples, columns = zip(*[(row, example, position) for row, sequence in enumerate(batch)
                                            for example, position in wanted[sequence]])
            for layer in layers:
                features[layer][list(examples)] = seen.residual[layer][list(rows), list(columns)].float().cpu()
    finally:
        model.train(training)
    return features


def _mentions(tokenizer, ids: list[int], text: str, name: str) -> list[list[int]]:
    """The token positions of each mention of `name` in `text`, whose tokens (after END_OF_TEXT) are ids[1:]."""
    spans = token_spans(tokenizer, ids[1:])
    return [[1 + i for i, (start, end) in enumerate(spans) if s < end and start < e]
            for s, e in _matches(rf"\b({re.escape(name)})\b", text)]


def name_swap_pair(tokenizer, story: Story, new_name: str) -> NameSwap | None:
    """The story and the story with the hero called `new_name`, token for token (see NameSwap), or
    None when the new name takes another number of tokens than the hero's.

    A mention's positions are those of the tokens holding its letters in either text: a tokenizer
    may write " Mia" as " " + "Mia" and " Ivy" as " I" + "vy", so the leading space's token can differ.
    """
    hero, friend = story.plot["hero"], story.plot["friend"]
    if not new_name.isalpha() or new_name == hero or re.search(rf"\b{new_name}\b", story.text):
        raise ValueError(f"new_name={new_name!r}: give one word of letters that is not the hero ({hero}) and not "
                         f"already in the story (the friend is {friend}), e.g. another of WORDS['names'].")
    end_of_text = _end_of_text(tokenizer)
    new_text = re.sub(rf"\b{re.escape(hero)}\b", new_name, story.text)
    clean = [end_of_text] + tokenizer.encode(story.text)
    corrupted = [end_of_text] + tokenizer.encode(new_text)
    if len(clean) != len(corrupted):
        return None
    mentions = [sorted(set(a) | set(b)) for a, b in zip(_mentions(tokenizer, clean, story.text, hero),
                                                        _mentions(tokenizer, corrupted, new_text, new_name))]
    return NameSwap(clean, corrupted, sorted(p for tokens in mentions for p in tokens), mentions[-1])
