"""Chapter 6: sentiment as classification — a linear head on a pretrained model, against a bag of words.

A language model's last hidden state at a token summarises everything before it (attention has
looked back over the whole text). A linear layer on top of that vector, trained on labelled texts
while the model stays frozen, turns the language model into a classifier:

    features = hidden_features(model, tokenizer, texts)          # (texts, n_embd), the model frozen
    head, history = train_classifier(features_by_split, labels_by_split, classes=("happy", "sad"))
    accuracy = (predict(head, test_features) == test_labels).float().mean()
    zero_shot_classify(model, tokenizer, prompts, {"happy": [" happy"], "sad": [" sad"]})   # no training

The baseline is the oldest text classifier there is: count each word (`BagOfWords`), ignore their
order, and train the same linear layer on the counts. Both use one `LinearClassifier`, so the
comparison is between the features only.

Without any training, a language model can also classify by comparing how likely it finds the
words of each label right after a prompt written like its training text (`zero_shot_classify`).

The classifier has the interface of the GPT (`forward(x, y) -> (logits, loss)`), so chapter 4's
training loop trains it unchanged: `FeatureBatches` hands it batches of feature vectors by number,
and in its history one example counts as one token.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minilm.presets import choose
from minilm.train import TrainConfig, train

WORD = re.compile(r"[a-z]+")
POOLINGS = ("last", "mean")


@torch.no_grad()
def hidden_features(model, tokenizer, texts: Sequence[str], pooling: str = "last") -> torch.Tensor:
    """One vector per text from the model's final hidden states: (texts, n_embd), on the CPU.

    pooling "last": the state at the last token, which has attended to the whole text; "mean": the
    average over every token. A text longer than the context is read by its last context_length tokens.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}; use one of {', '.join(POOLINGS)}.")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vectors = []
    for text in texts:
        ids = tokenizer.encode(text)[-model.config.context_length:]
        if not ids:
            raise ValueError("an empty text has no hidden state; give every text at least one token.")
        states = model.hidden_states(torch.tensor([ids], device=device))[0]  # (time, n_embd)
        vectors.append(states[-1] if pooling == "last" else states.mean(dim=0))
    model.train(was_training)
    return torch.stack(vectors).float().cpu()  # (texts, n_embd)


class BagOfWords:
    """Word counts: each text becomes a vector with one entry per known word (order ignored)."""

    def __init__(self, vocabulary: Sequence[str]):
        self.vocabulary = list(vocabulary)  # the known words, in column order
        self.index = {word: i for i, word in enumerate(self.vocabulary)}

    @staticmethod
    def words(text: str) -> list[str]:
        """The lower-case words of a text (runs of letters a-z)."""
        return WORD.findall(text.lower())

    @classmethod
    def fit(cls, texts: Sequence[str], min_count: int = 2) -> BagOfWords:
        """The vocabulary of the words seen at least `min_count` times in `texts`, sorted."""
        counts = Counter(word for text in texts for word in cls.words(text))
        return cls(sorted(word for word, count in counts.items() if count >= min_count))

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        """Counts of each known word in each text: (texts, vocabulary); unknown words are dropped."""
        counts = torch.zeros(len(texts), len(self.vocabulary))  # (texts, vocabulary)
        for row, text in enumerate(texts):
            for word in self.words(text):
                if word in self.index:
                    counts[row, self.index[word]] += 1
        return counts


class LinearClassifier(nn.Module):
    """Standardise each feature (with the training set's mean and spread), then one linear layer."""

    def __init__(self, train_features: torch.Tensor, n_classes: int):
        super().__init__()
        self.register_buffer("mean", train_features.mean(dim=0))  # (features,)
        self.register_buffer("scale", train_features.std(dim=0).clamp_min(1e-6))  # (features,), never 0
        self.linear = nn.Linear(train_features.shape[1], n_classes)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        """(logits (batch, classes), mean cross-entropy or None): the GPT's interface."""
        logits = self.linear((x - self.mean) / self.scale)  # (batch, classes)
        return logits, None if targets is None else F.cross_entropy(logits, targets)


class FeatureBatches:
    """Batches of (features, label) drawn by number, each index always the same batch."""

    def __init__(self, features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], batch_size: int,
                 seed: int = 0):
        self.features, self.labels = features, labels  # split -> (examples, features) and (examples,)
        self.batch_size = batch_size
        self.seed = seed

    def get_batch(self, split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        digest = hashlib.blake2b(f"{self.seed}/{split}/{index}".encode(), digest_size=8).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        rows = torch.randint(len(self.labels[split]), (self.batch_size,), generator=generator)  # (batch,)
        return self.features[split][rows], self.labels[split][rows]


@dataclass(frozen=True)
class ClassifierSizes:
    """How long to train a linear classifier, for one preset."""

    steps: int  # optimizer steps
    batch_size: int  # examples per step
    lr: float  # peak learning rate


CLASSIFIER_SIZES = {"smoke": ClassifierSizes(steps=20, batch_size=32, lr=1e-2),
                    "cpu": ClassifierSizes(steps=300, batch_size=64, lr=1e-2),
                    "gpu": ClassifierSizes(steps=600, batch_size=128, lr=1e-2)}


def label_ids(labels: Sequence[str], classes: Sequence[str]) -> torch.Tensor:
    """Class names -> their index in `classes`: (examples,) int64."""
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}.")
    return torch.tensor([list(classes).index(label) for label in labels])


def train_classifier(features: dict[str, torch.Tensor], labels: dict[str, Sequence[str]], classes: Sequence[str],
                     preset: str | None = None, seed: int = 0) -> tuple[LinearClassifier, list[dict]]:
    """A LinearClassifier trained with chapter 4's loop on the "train" split ("validation" is watched)."""
    for split in ("train", "validation"):
        if split not in features or len(features[split]) != len(labels.get(split, ())):
            raise ValueError(f"give features and as many labels for the split {split!r}.")
    sizes = choose(CLASSIFIER_SIZES, preset)
    targets = {split: label_ids(labels[split], classes) for split in labels}
    head = LinearClassifier(features["train"], len(classes))
    config = TrainConfig(steps=sizes.steps, batch_size=sizes.batch_size, context_length=1, lr=sizes.lr,
                         min_lr=sizes.lr / 10, warmup_steps=max(1, sizes.steps // 10), weight_decay=0.01,
                         eval_every=max(1, sizes.steps // 5), eval_batches=4, seed=seed)
    history = train(head, FeatureBatches(features, targets, sizes.batch_size, seed), config)
    return head, history


@torch.no_grad()
def continuation_log_prob(model, tokenizer, prompt: str, continuation: str) -> float:
    """ln p(continuation | prompt): the sum of the log-probabilities of its tokens, one forward pass."""
    prompt_ids, ids = tokenizer.encode(prompt), tokenizer.encode(continuation)
    tokens = torch.tensor([prompt_ids + ids], device=next(model.parameters()).device)  # (1, time)
    if tokens.shape[1] > model.config.context_length:
        raise ValueError(f"prompt and continuation take {tokens.shape[1]} tokens, more than the model's context "
                         f"of {model.config.context_length}.")
    was_training = model.training
    model.eval()
    log_probs = model(tokens)[0][0, len(prompt_ids) - 1:-1].log_softmax(dim=-1)  # (continuation, vocab)
    model.train(was_training)
    return log_probs.gather(-1, tokens[0, len(prompt_ids):, None]).sum().item()


def zero_shot_classify(model, tokenizer, prompts: Sequence[str], verbalizers: dict[str, Sequence[str]]) -> list[str]:
    """For each prompt, the label whose words the model finds likeliest to come next: no training at all.

    `verbalizers` maps each label to the continuations that express it, e.g. {"happy": [" glad",
    " happy"], "sad": [" sad", " upset"]}; a label's score is the total probability of its words.
    """
    labels = []
    for prompt in prompts:
        scores = {label: torch.tensor([continuation_log_prob(model, tokenizer, prompt, word) for word in words])
                  .logsumexp(dim=0).item() for label, words in verbalizers.items()}
        labels.append(max(scores, key=scores.get))
    return labels


@torch.no_grad()
def predict(head: LinearClassifier, features: torch.Tensor, classes: Sequence[str]) -> list[str]:
    """The likeliest class of each feature vector."""
    logits, _ = head(features.to(head.mean.device))  # (examples, classes)
    return [classes[i] for i in logits.argmax(dim=-1).tolist()]
