"""Loss, perplexity, bits per byte and the entropy floor against float64 maths and a tiny source
whose probabilities are known exactly."""
import itertools
import math

import numpy as np
import pytest
import torch

from minilm.evaluate.lm import (bits_per_byte, entropy_floor, gap_to_floor, loss_by_position, perplexity,
                                sliding_window_loss, token_losses, windows)


class PositionalLookup(torch.nn.Module):
    """A stand-in language model: logits from the current token plus a bias for each position."""

    def __init__(self, vocab, block_size):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=generator))
        self.position = torch.nn.Parameter(torch.randn(block_size, vocab, generator=generator))
        self.dropout = torch.nn.Dropout(0.5)  # would make results random if eval mode were not set

    def forward(self, idx, targets=None):
        logits = self.dropout(self.table[idx] + self.position[: idx.shape[1]])  # (batch, T, vocab)
        return logits, None


def test_windows_cut_the_stream_without_overlap():
    inputs, targets = windows(list(range(23)), block_size=5)
    assert inputs.tolist() == [list(range(w * 5, w * 5 + 5)) for w in range(4)]
    assert targets.tolist() == [list(range(w * 5 + 1, w * 5 + 6)) for w in range(4)]
    assert windows(np.arange(23, dtype=np.uint16), 5, max_windows=2)[0].shape == (2, 5)
    with pytest.raises(ValueError, match="too few for one window"):
        windows([1, 2, 3], block_size=5)


def test_overlapping_windows_count_every_token_once():
    ids = list(range(30))
    inputs, targets = windows(ids, block_size=8, stride=3)
    assert [row.tolist() for row in inputs] == [ids[s:s + 8] for s in range(0, 22, 3)]
    assert torch.equal(targets, inputs + 1)
    # Score each target by its own index: counting each of 1..last exactly once gives their mean.
    last = int(targets[-1, -1])
    assert sliding_window_loss(targets.float(), stride=3) == pytest.approx(np.mean(range(1, last + 1)))
    assert sliding_window_loss(windows(ids, 8)[1].float(), stride=8) == pytest.approx(np.mean(range(1, 25)))
    with pytest.raises(ValueError, match="stride"):
        windows(ids, block_size=8, stride=9)
    with pytest.raises(ValueError, match="stride"):
        sliding_window_loss(targets.float(), stride=0)


def test_windows_read_a_token_stream(tmp_path):
    from minilm.tokens import TokenStream

    np.arange(23, dtype=np.uint16).tofile(tmp_path / "valid.bin")
    inputs, targets = windows(TokenStream(tmp_path / "valid.bin", "uint16"), block_size=5, max_windows=3)
    assert inputs.tolist() == [list(range(w * 5, w * 5 + 5)) for w in range(3)]
    assert targets[-1].tolist() == list(range(11, 16))


def test_token_losses_average_to_the_gpt_loss():
    from minilm.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context_length=16, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (16 * 5 + 1,))
    inputs, targets = windows(ids, 16)
    with torch.no_grad():
        expected = model(inputs, targets)[1]
    assert token_losses(model, ids, block_size=16, batch_size=2).mean() == pytest.approx(expected.item(), rel=1e-5)


def test_token_losses_match_float64_cross_entropy():
    vocab, block = 9, 6
    model = PositionalLookup(vocab, block).train()
    ids = torch.randint(0, vocab, (40,), generator=torch.Generator().manual_seed(1))
    losses = token_losses(model, ids, block_size=block, batch_size=4)
    assert model.training  # put back as it was
    table, position = model.table.detach().double(), model.position.detach().double()
    expected = torch.empty(len(losses), block, dtype=torch.float64)
    for w in range(len(losses)):
        for t in range(block):
            logits = table[ids[w * block + t]] + position[t]
            expected[w, t] = torch.logsumexp(logits, 0) - logits[ids[w * block + t + 1]]
    torch.testing.assert_close(losses.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_by_position(losses).double(), expected.mean(0), rtol=1e-5, atol=1e-6)


def test_models_that_return_only_the_last_logits_are_refused():
    class LastOnly(PositionalLookup):
        def forward(self, idx, targets=None):
            return super().forward(idx)[0][:, -1:], None

    with pytest.raises(ValueError, match="logits for every position"):
        token_losses(LastOnly(5, 4), list(range(5)) * 4, block_size=4)


def test_perplexity_and_bits_per_byte_by_float64_maths():
    losses = np.random.default_rng(0).uniform(0.5, 4, size=1000)
    assert perplexity(losses.mean()) == pytest.approx(np.exp(np.float64(losses).mean()), rel=1e-12)
    assert perplexity(math.log(7)) == pytest.approx(7.0)  # as unsure as a fair seven-sided die
    # 2.0 nats per token, 300 tokens for 1000 bytes: 600 nats = 600 / ln 2 bits over 1000 bytes
    assert bits_per_byte(2.0, 300, 1000) == pytest.approx(600 / np.log(2) / 1000, rel=1e-12)
    with pytest.raises(ValueError, match="at least one token and one byte"):
        bits_per_byte(2.0, 0, 10)


# A tiny source whose probabilities are known: a story is 1 to 3 letters (a: 0.7, b: 0.3), its length
# drawn with probabilities 0.5, 0.3, 0.2; every story is followed by the separator "|".
LENGTHS, LETTERS, SEPARATOR = {1: 0.5, 2: 0.3, 3: 0.2}, {"a": 0.7, "b": 0.3}, "|"
STORIES = {"".join(letters): LENGTHS[n] * math.prod(LETTERS[c] for c in letters)
           for n in LENGTHS for letters in itertools.product("ab", repeat=n)}


def by_characters(text):
    return list(text) + [SEPARATOR]


def by_pairs(text):
    return [text[i:i + 2] for i in range(0, len(text), 2)] + [SEPARATOR]


def exact_next_token_prob(tokenize, story_tokens_so_far, token):
    """p(next token | tokens of the current story so far), by summing over every story of the source."""
    def mass(prefix):
        return sum(p for text, p in STORIES.items() if tokenize(text)[:len(prefix)] == prefix)

    return mass(story_tokens_so_far + [token]) / mass(story_tokens_so_far)


@pytest.mark.parametrize("seed", [0, 1])
def test_floor_is_what_the_exact_model_scores_for_any_tokenizer(seed):
    rng = np.random.default_rng(seed)
    texts = list(STORIES)
    sample = [texts[i] for i in rng.choice(len(texts), size=300, p=list(STORIES.values()))]
    log_probs = [math.log(STORIES[text]) for text in sample]
    n_bytes = sum(len((text + SEPARATOR).encode()) for text in sample)
    floors = {}
    for tokenize in (by_characters, by_pairs):
        nats, n_tokens = 0.0, 0
        for text in sample:  # the chain rule, token by token, separators included
            tokens = tokenize(text)
            for i, token in enumerate(tokens):
                nats -= math.log(exact_next_token_prob(tokenize, tokens[:i], token))
            n_tokens += len(tokens)
        floor = entropy_floor(log_probs, n_tokens, n_bytes)
        assert floor.nats_per_token == pytest.approx(nats / n_tokens, rel=1e-12)
        assert floor.bits_per_byte == pytest.approx(bits_per_byte(nats / n_tokens, n_tokens, n_bytes), rel=1e-12)
        floors[tokenize.__name__] = floor
    chars, pairs = floors["by_characters"], floors["by_pairs"]
    assert chars.bits_per_byte == pytest.approx(pairs.bits_per_byte, rel=1e-12)  # same text, same information
    assert pairs.nats_per_token > chars.nats_per_token  # fewer, longer tokens carry more each


def test_gap_to_the_floor():
    floor = entropy_floor([math.log(0.25)] * 10, n_tokens=20, n_bytes=40)  # 10 ln 4 nats over 20 tokens
    gap = gap_to_floor(0.9, floor)
    assert gap.floor == pytest.approx(math.log(4) / 2)
    assert gap.ratio == pytest.approx(0.9 / (math.log(4) / 2))
    assert gap.excess == pytest.approx(0.9 - math.log(4) / 2)


def test_floor_rejects_bad_input():
    with pytest.raises(ValueError, match="keep the documents whose source is the story world"):
        entropy_floor([-1.0, float("nan")], 10, 10)
    with pytest.raises(ValueError, match="cannot be positive"):
        entropy_floor([2.0], 10, 10)
    with pytest.raises(ValueError, match="no log-probabilities"):
        entropy_floor([], 10, 10)
    with pytest.raises(ValueError, match="at least one token"):
        entropy_floor([-1.0], 0, 10)
