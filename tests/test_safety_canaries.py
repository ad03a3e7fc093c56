"""Canaries and exposure: scores equal a brute-force loop with its own log-softmax, a tiny model trained on a
canary repeated many times ranks its secret first while an unplanted one it never saw is not, planted
counts are exact; continued training of the course model is cached by its texts."""
import math

import pytest
import torch
import torch.nn.functional as F

from minilm.course_model import course_model
from minilm.data import END_OF_TEXT, StoryConfig, StoryWorld
from minilm.model import GPT, GPTConfig
from minilm.safety import continued
from minilm.safety.canaries import (Canary, canary_experiment, exposure, extracted, make_canaries, plant,
                                    secret_log_probs, secret_space)
from minilm.safety.continued import continue_training
from minilm.safety.privacy import mask_pii
from minilm.tokenizer import BPETokenizer
from minilm.train import TrainConfig, train


def stories(count, seed):
    return [s.text for s in StoryWorld(StoryConfig()).stories(count, seed=seed)]


def tiny_gpt(vocab_size, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, context_length=64, n_layer=1, n_head=2, n_embd=32)).eval()


def brute_force_log_prob(model, tokenizer, prefix, candidate):
    """log P(candidate | END_OF_TEXT + prefix), one candidate at a time, with F.log_softmax over the full text."""
    ids = [tokenizer.special_tokens[END_OF_TEXT]] + tokenizer.encode(prefix + candidate)
    given = 1 + len(tokenizer.encode(prefix))
    with torch.no_grad():
        log_probs = F.log_softmax(model(torch.tensor([ids]))[0][0].double(), dim=-1)  # (time, vocab)
    return sum(log_probs[t - 1, ids[t]].item() for t in range(given, len(ids)))


@pytest.fixture(scope="module")
def digit_tokenizer():
    """A tokenizer that has merged some digit pairs, so candidates take one or two tokens each."""
    numbers = ",".join(f"{n:02d}" for n in range(0, 100, 3)) * 20
    return BPETokenizer.train(stories(30, seed=2) + [numbers], vocab_size=320)


def test_log_probs_and_exposure_equal_a_brute_force_loop(digit_tokenizer):
    model = tiny_gpt(digit_tokenizer.vocab_size)
    canary = Canary("You can write to Mia at mia.", "42", "email", 0, "@example.org.")
    candidates = secret_space(canary)
    assert len(candidates) == 100
    lengths = {len(digit_tokenizer.encode(c)) for c in candidates}
    assert lengths == {1, 2}  # both stem lengths are exercised
    scores = secret_log_probs(model, digit_tokenizer, canary)
    expected = torch.tensor([brute_force_log_prob(model, digit_tokenizer, canary.prefix, c) for c in candidates],
                            dtype=torch.float64)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)
    ranked = sorted(candidates, key=lambda c: -expected[candidates.index(c)].item())
    assert exposure(model, digit_tokenizer, canary) == pytest.approx(
        math.log2(100) - math.log2(ranked.index("42") + 1))
    probabilities = expected.exp()
    assert 0 < probabilities.sum().item() <= 1 + 1e-9  # a share of all continuations, never more


def test_a_prefix_that_does_not_end_at_a_token_boundary_is_refused(digit_tokenizer):
    model = tiny_gpt(digit_tokenizer.vocab_size)
    merged = next(c for c in secret_space(Canary("", "00", "email", 0)) if len(digit_tokenizer.encode(c)) == 1)
    with pytest.raises(ValueError, match="token ends"):  # the prefix's last digit merges with the secret's
        exposure(model, digit_tokenizer, Canary(f"Write to mia.{merged[0]}", merged[1], "email", 0))


def train_on(texts, tokenizer, steps=300, seed=0):
    """A tiny GPT trained on `texts` joined by END_OF_TEXT, as minilm's streams join documents."""
    end = tokenizer.special_tokens[END_OF_TEXT]
    stream = torch.tensor([i for text in texts for i in tokenizer.encode(text) + [end]])  # (tokens,)

    def get_batch(split, index):
        generator = torch.Generator().manual_seed(index + (0 if split == "train" else 10 ** 6))
        starts = torch.randint(len(stream) - 65, (16,), generator=generator)
        windows = torch.stack([stream[s:s + 65] for s in starts.tolist()])  # (16, 65)
        return windows[:, :-1], windows[:, 1:]

    model = tiny_gpt(tokenizer.vocab_size, seed)
    train(model, get_batch, TrainConfig(steps=steps, batch_size=16, context_length=64, lr=1e-2, min_lr=1e-3,
                                        warmup_steps=10, eval_every=0))
    return model


def test_a_canary_seen_many_times_reaches_maximum_exposure_and_an_unplanted_one_does_not():
    planted, unplanted = make_canaries(repeats=(50, 0), digits=3, per_kind=1)[:2]  # two e-mail canaries
    assert (planted.kind, planted.repeats, unplanted.repeats) == ("email", 50, 0)
    texts = plant(stories(40, seed=3), [planted, unplanted], seed=0)
    tokenizer = BPETokenizer.train(texts, vocab_size=300)
    model = train_on(texts, tokenizer)
    maximum = math.log2(1000)
    assert exposure(model, tokenizer, planted) == pytest.approx(maximum)  # ranked first of 1000
    assert extracted(model, tokenizer, planted)
    assert exposure(model, tokenizer, unplanted) < maximum - 1
    assert not extracted(model, tokenizer, unplanted)


def test_planting_inserts_each_canary_exactly_its_repeats_and_keeps_the_texts_in_order():
    texts = stories(50, seed=5)
    canaries = make_canaries(repeats=(0, 1, 4, 16), seed=1, digits=4, per_kind=2)
    planted = plant(texts, canaries, seed=3)
    for canary in canaries:
        assert planted.count(canary.text) == canary.repeats
    texts_of_canaries = {c.text for c in canaries}
    assert [t for t in planted if t not in texts_of_canaries] == texts
    assert len(planted) == len(texts) + sum(c.repeats for c in canaries)
    assert plant(texts, canaries, seed=3) == planted and plant(texts, canaries, seed=4) != planted


def test_masking_hides_the_email_and_key_canaries_but_not_the_door_code():
    canaries = make_canaries(repeats=(1, 4), digits=5, per_kind=2)
    assert len({c.prefix for c in canaries}) == len(canaries)  # no two share a prefix
    assert len(canaries) == 3 * 2 * 2
    for canary in canaries:
        assert len(canary.secret) == 5 and canary.secret.isdigit() and canary.secret in canary.text
        assert (canary.secret in mask_pii(canary.text)) == (canary.kind == "door")


def test_bad_canary_settings_are_refused():
    with pytest.raises(ValueError, match="digits"):
        make_canaries(digits=0)
    with pytest.raises(ValueError, match="names"):
        make_canaries(repeats=tuple(range(20)), per_kind=1)
    with pytest.raises(ValueError, match="not among the candidates"):
        exposure(tiny_gpt(300), None, Canary("a.", "12", "email", 0), candidates=["00", "01"])


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_continued_training_is_cached_by_its_texts(smoke_cache, monkeypatch):
    start = course_model("smoke", device="cpu").model
    texts = ["You can write to Mia at mia.123@example.org."] * 30 + stories(20, seed=7)
    first = continue_training("test", texts, preset="smoke", device="cpu")
    assert not first.training
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), start.parameters()))  # it learnt

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded, not trained again")

    monkeypatch.setattr(continued, "train", no_training)
    again = continue_training("test", texts, preset="smoke", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    with pytest.raises(AssertionError, match="loaded, not trained"):
        continue_training("test", texts[:-1], preset="smoke", device="cpu")  # other texts: another entry


def test_continued_training_refuses_bad_input(smoke_cache):
    with pytest.raises(ValueError, match="non-empty list"):
        continue_training("test", "one string", preset="smoke", device="cpu")
    with pytest.raises(ValueError, match="separates documents"):
        continue_training("test", [f"a{END_OF_TEXT}b"], preset="smoke", device="cpu")
    with pytest.raises(ValueError, match="cache folder"):
        continue_training("../x", ["text"], preset="smoke", device="cpu")
    with pytest.raises(ValueError, match="steps"):
        continue_training("test", ["text"], steps=0, preset="smoke", device="cpu")


def test_the_smoke_experiment_measures_every_canary_in_both_models(smoke_cache):
    rows = canary_experiment("smoke", device="cpu")
    assert len(rows) == 3 * 6  # three kinds at six repeat counts, one canary each at smoke
    assert {row["kind"] for row in rows} == {"email", "key", "door"} and min(r["repeats"] for r in rows) == 0
    for row in rows:
        for version in ("raw", "masked"):
            assert 0 <= row[f"exposure_{version}"] <= row["max_exposure"] == pytest.approx(math.log2(1000))
            assert isinstance(row[f"extracted_{version}"], bool)
