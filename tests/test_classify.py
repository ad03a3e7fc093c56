"""Classification: bag-of-words counts against collections.Counter, hidden features against the
model's own states (causality gives an independent check), and a linear head trained by chapter 4's
loop that separates what is separable."""
import math
import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from minilm.apps.classify import (BagOfWords, FeatureBatches, LinearClassifier, continuation_log_prob, hidden_features,
                             label_ids, predict, train_classifier, zero_shot_classify)
from minilm.data import StoryWorld
from minilm.model import GPT, GPTConfig
from minilm.apps.tasks import without_ending
from minilm.tokenizer import BPETokenizer

STORIES = StoryWorld().stories(30, seed=63)
TEXTS = [without_ending(s) for s in STORIES]
TOKENIZER = BPETokenizer.train(TEXTS, 400)


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, context_length=64, n_layer=1, n_head=2, n_embd=32))


def test_bag_of_words_counts_like_a_counter():
    bag = BagOfWords.fit(TEXTS, min_count=3)
    every = Counter(w for t in TEXTS for w in t.lower().replace(",", " ").replace(".", " ").split())
    assert bag.vocabulary == sorted(w for w, c in every.items() if c >= 3 and w.isalpha())
    counts = bag.transform(TEXTS[:5] + ["Zebra zebra MIA unknownword"])
    for row, text in enumerate(TEXTS[:5]):
        expected = Counter(w for w in text.lower().replace(",", " ").replace(".", " ").split())
        assert {w: int(counts[row, i]) for i, w in enumerate(bag.vocabulary) if counts[row, i]} == \
            {w: c for w, c in expected.items() if w in bag.index}
    assert counts[5].sum() == sum(w in bag.index for w in ("zebra", "zebra", "mia", "unknownword"))


def test_last_token_features_do_not_see_what_follows():
    model = tiny_model()
    texts = ["Mia found a kite.", "Long ago, a shy fox lived in a snowy valley."]
    features = hidden_features(model, TOKENIZER, texts)
    for text, vector in zip(texts, features):
        ids = TOKENIZER.encode(text)
        longer = torch.tensor([ids + TOKENIZER.encode(" And then it rained.")])
        assert torch.allclose(vector, model.hidden_states(longer)[0, len(ids) - 1], atol=1e-5)
    mean = hidden_features(model, TOKENIZER, texts[:1], pooling="mean")
    assert torch.allclose(mean[0], model.hidden_states(torch.tensor([TOKENIZER.encode(texts[0])]))[0].mean(0), atol=1e-6)
    assert features.shape == (2, 32) and model.training  # put back in the mode it was in


def test_long_texts_are_read_by_their_end_and_bad_pooling_is_refused():
    model = tiny_model()
    long_text = " ".join(TEXTS[:3])
    ids = TOKENIZER.encode(long_text)[-64:]
    expected = model.hidden_states(torch.tensor([ids]))[0, -1]
    assert torch.allclose(hidden_features(model, TOKENIZER, [long_text])[0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        hidden_features(model, TOKENIZER, TEXTS[:1], pooling="max")


def test_linear_classifier_loss_is_cross_entropy_of_standardised_features():
    torch.manual_seed(1)
    x = torch.randn(20, 5, dtype=torch.float32) * 3 + 1
    y = torch.randint(0, 3, (20,))
    head = LinearClassifier(x, 3)
    logits, loss = head(x, y)
    z = (x - x.mean(0)) / x.std(0)
    expected = z @ head.linear.weight.detach().T + head.linear.bias.detach()
    assert torch.allclose(logits, expected, atol=1e-5)
    assert loss.item() == pytest.approx(F.cross_entropy(expected, y).item(), rel=1e-5)


def test_chapter_4_loop_trains_a_head_that_separates_separable_data():
    rng = random.Random(0)
    points = torch.tensor([[rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(200)])
    labels = ["right" if x + 0.5 * y > 0.2 else "left" for x, y in points.tolist()]
    classes = ("left", "right")
    head, history = train_classifier({"train": points[:150], "validation": points[150:]},
                                     {"train": labels[:150], "validation": labels[150:]}, classes, preset="cpu")
    predictions = predict(head, points[150:], classes)
    accuracy = sum(p == t for p, t in zip(predictions, labels[150:])) / 50
    assert accuracy >= 0.95
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_labels_and_splits_are_checked():
    assert label_ids(["sad", "happy", "sad"], ("happy", "sad")).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="not among the classes"):
        label_ids(["angry"], ("happy", "sad"))
    with pytest.raises(ValueError, match="validation"):
        train_classifier({"train": torch.zeros(2, 2)}, {"train": ["a", "b"]}, ("a", "b"))


def test_feature_batches_are_drawn_by_number():
    batches = FeatureBatches({"train": torch.arange(10.0)[:, None]}, {"train": torch.arange(10)}, 4, seed=3)
    x, y = batches.get_batch("train", 5)
    assert torch.equal(x, batches.get_batch("train", 5)[0]) and torch.equal(x[:, 0].long(), y)


def test_continuation_log_prob_is_the_chain_rule_step_by_step():
    model = tiny_model()
    prompt, continuation = "Long ago, a shy fox", " lived in a snowy valley"
    prompt_ids, ids = TOKENIZER.encode(prompt), TOKENIZER.encode(continuation)
    by_steps = 0.0
    for i, token in enumerate(ids):  # one forward pass per prefix: ln p(token | everything before it)
        logits = model(torch.tensor([prompt_ids + ids[:i]]))[0][0, -1].double()
        by_steps += torch.log_softmax(logits, dim=-1)[token].item()
    assert continuation_log_prob(model, TOKENIZER, prompt, continuation) == pytest.approx(by_steps, abs=1e-4)
    with pytest.raises(ValueError, match="more than the model's context"):
        continuation_log_prob(model, TOKENIZER, " ".join(TEXTS), " end")


def test_zero_shot_picks_the_label_with_the_likeliest_words():
    model = tiny_model()
    verbalizers = {"happy": [" happy", " glad"], "sad": [" sad", " upset", " lonely"]}
    prompts = [" ".join(t.split()[:12]) + " In the end, she felt" for t in TEXTS[:4]]
    for prompt, label in zip(prompts, zero_shot_classify(model, TOKENIZER, prompts, verbalizers)):
        mass = {name: sum(math.exp(continuation_log_prob(model, TOKENIZER, prompt, w)) for w in words)
                for name, words in verbalizers.items()}
        assert label == max(mass, key=mass.get)
