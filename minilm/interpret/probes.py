"""Linear probes: can a straight line through the residual stream read off a fact?

A probe is a multinomial logistic regression trained on a model's hidden vectors (one per
example, taken at one layer and one token position) to predict a label the data knows for sure,
here the story world's plot (minilm.interpret.story_labels). High held-out accuracy says the fact
is *linearly decodable* at that layer; it does not say the model uses it.

    probe = fit_probe(train_features, train_labels, ProbeConfig(l2=1e-2))
    probe.accuracy(test_features, test_labels)           # share right on held-out examples
    control = control_labels(labels, keys, seed=0)       # Hewitt & Liang's control task
    rows = probe_layers(features_by_layer, labels, train_index, test_index, control=control)
    # one row per layer: train/test accuracy, control accuracy, selectivity, majority baseline, 95% CI

The model. p(class k | x) = softmax(W·z + b)_k on standardised features z = (x − mean) / std
(mean and std of the training set; a constant feature keeps std 1, as in scikit-learn's
StandardScaler). Training minimises the mean cross-entropy + l2/2·‖W‖² (the bias is not
penalised), full-batch, in float64, with L-BFGS and a strong-Wolfe line search. The objective is
smooth and, for l2 > 0, strongly convex, so it has one optimum and L-BFGS reaches it: the tests
check the probabilities against scikit-learn's LogisticRegression at C = 1 / (l2·n). With two
classes there are still two weight vectors, W₁ and W₂ (the softmax form); at the optimum
W₁ = −W₂, so this equals a binary logistic regression with weight W₁ − W₂ and half the L2 strength.

Control tasks (Hewitt & Liang, 2019, "Designing and Interpreting Probes with Control Tasks"). A
probe that is expressive enough can learn almost any function of what is written at a position,
fact or not. The control task gives every distinct *key* a random label, drawn from the real
labels' distribution, and keeps it wherever that key comes back; a probe can only beat chance on
held-out data by memorising which key got which label. Selectivity = test accuracy − control test
accuracy: high when the probe reads the fact rather than memorising keys. The chapter's key is the
pair (token before, token at) the probed position (`ProbeData.keys` in story_labels): the probed
token itself is the same in every story (the "." ending a sentence, or " felt"), so it alone would
give every example the same label; the token before it varies (the friend's name before the
second sentence's ".", the hero's name before " felt", a sentence's last word) and the residual
stream surely carries it. A story id would make a useless key: held-out stories never share one
with the training set, so the control probe would sit at chance whatever the features hold.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from minilm.apps.task_eval import wilson_interval

GRADIENT_TOLERANCE = 1e-10  # L-BFGS stops once no gradient entry is larger: float64 leaves room
CHANGE_TOLERANCE = 1e-15  # ... or once a step changes the loss or the weights by less than this


@dataclass(frozen=True)
class ProbeConfig:
    l2: float = 1e-2  # weight of l2/2·‖W‖² on standardised features: one optimum, and no memorising
    steps: int = 1000  # most L-BFGS iterations; a convex probe of a few hundred features stops far sooner
    lr: float = 1.0  # L-BFGS's first trial step; 1 is the natural (Newton) step, the line search adjusts it

    def __post_init__(self) -> None:
        if self.l2 < 0 or self.steps < 1 or self.lr <= 0:
            raise ValueError(f"l2={self.l2}, steps={self.steps}, lr={self.lr}: use l2 >= 0, steps >= 1, lr > 0.")


@dataclass(frozen=True)
class Probe:
    """A fitted probe: standardise, then softmax(z·weight + bias) over `classes`."""

    classes: np.ndarray  # (classes,) the label values, sorted; column k of the weights predicts classes[k]
    mean: torch.Tensor  # (features,) the training set's mean, float64
    std: torch.Tensor  # (features,) its standard deviation (1 where a feature is constant)
    weight: torch.Tensor  # (features, classes)
    bias: torch.Tensor  # (classes,)
    loss: float  # the objective at the end: mean cross-entropy + l2/2·‖W‖²
    steps_taken: int  # L-BFGS iterations used

    def predict_proba(self, features) -> torch.Tensor:
        """(examples, classes) probability of each class, float64."""
        z = (_as_features(features, self.mean.numel()) - self.mean) / self.std  # (examples, features)
        return torch.softmax(z @ self.weight + self.bias, dim=-1)  # (examples, classes)

    def predict(self, features) -> np.ndarray:
        """(examples,) the most probable class of each example, as a label value."""
        return self.classes[self.predict_proba(features).argmax(dim=-1).numpy()]

    def accuracy(self, features, labels) -> float:
        """The share of examples whose predicted class is their label."""
        labels = np.asarray(labels)
        if len(labels) != len(features) or not len(labels):
            raise ValueError(f"{len(features)} feature rows and {len(labels)} labels: pass one label per row, "
                             f"at least one.")
        return float(np.mean(self.predict(features) == labels))


def _as_features(features, width: int | None = None) -> torch.Tensor:
    """Features as a (examples, features) float64 CPU tensor, refused if not that shape or not finite."""
    x = (features.detach().to("cpu", torch.float64) if torch.is_tensor(features)
         else torch.as_tensor(np.asarray(features, dtype=np.float64)))
    if x.dim() != 2 or (width is not None and x.shape[1] != width):
        want = f"(examples, {width})" if width is not None else "(examples, features)"
        raise ValueError(f"features have shape {tuple(x.shape)}; pass a {want} matrix, one row per example.")
    if not torch.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values; probe finite hidden states.")
    return x


def fit_probe(features, labels, config: ProbeConfig = ProbeConfig()) -> Probe:
    """Train a multinomial logistic-regression probe on (examples, features) and (examples,) labels."""
    x = _as_features(features)  # (examples, features)
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(x):
        raise ValueError(f"{len(x)} feature rows but labels of shape {labels.shape}; pass one label per row.")
    classes, y = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"the labels hold a single class ({classes[:1].tolist()}); a probe needs examples "
                         f"of at least two classes to learn anything.")
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)  # (features,) each
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = (x - mean) / std  # (examples, features)
    targets = torch.as_tensor(y, dtype=torch.long)  # (examples,)
    weight = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)  # (features, classes)
    bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)  # (classes,)
    optimizer = torch.optim.LBFGS([weight, bias], lr=config.lr, max_iter=config.steps, history_size=20,
                                  tolerance_grad=GRADIENT_TOLERANCE, tolerance_change=CHANGE_TOLERANCE,
                                  line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, targets) + config.l2 / 2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        loss = F.cross_entropy(z @ weight + bias, targets) + config.l2 / 2 * weight.pow(2).sum()
    steps_taken = optimizer.state[weight]["n_iter"]  # L-BFGS keeps its state under the first parameter
    return Probe(classes, mean, std, weight.detach(), bias.detach(), float(loss), int(steps_taken))


def control_labels(labels, keys: Sequence[Hashable], seed: int) -> np.ndarray:
    """(examples,) a control task: each distinct key gets one label drawn from `labels`' distribution.

    Every example with the same key gets the same control label, so a probe can learn the control
    task only by telling keys apart; see the module docstring for the key the chapter uses.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(keys) != len(labels) or not len(labels):
        raise ValueError(f"{len(labels)} labels and {len(keys)} keys: pass one key per label, at least one.")
    rng = np.random.default_rng(seed)
    label_of_key = {}
    for key in keys:  # keys in order of first appearance, so the draw does not depend on hashing
        if key not in label_of_key:
            label_of_key[key] = labels[rng.integers(len(labels))]  # a random example's label: the real distribution
    return np.array([label_of_key[key] for key in keys], dtype=labels.dtype)


def probe_layers(features_by_layer: Mapping[int, object] | Sequence, labels, train_index, test_index,
                 config: ProbeConfig = ProbeConfig(), control=None) -> list[dict]:
    """Fit one probe per layer on `train_index` and score it on `test_index`; one row per layer.

    `features_by_layer` maps a layer to its (examples, features) matrix (a list counts from layer
    0). `control` is a control task's labels (`control_labels`), one per example; without it the
    control accuracy and the selectivity are NaN. Row keys: layer, train_accuracy, test_accuracy,
    control_accuracy, selectivity (test − control), majority_baseline (the share of test examples
    whose label is the training set's most common one), n_test, and ci_low, ci_high (the 95%
    Wilson interval of the test accuracy).
    """
    labels = np.asarray(labels)
    train_index, test_index = np.asarray(train_index, dtype=np.int64), np.asarray(test_index, dtype=np.int64)
    if not len(train_index) or not len(test_index):
        raise ValueError("train_index and test_index must each hold at least one example.")
    if np.intersect1d(train_index, test_index).size:
        raise ValueError("train_index and test_index share examples; a held-out score needs disjoint sets.")
    if control is not None:
        control = np.asarray(control)
        if control.shape != labels.shape:
            raise ValueError(f"{len(control)} control labels for {len(labels)} labels; make them with "
                             f"control_labels(labels, keys, seed).")
        if len(np.unique(control[train_index])) < 2:
            raise ValueError("the control task's training labels hold a single class: its keys take too few "
                             "values; key it on something that varies between examples.")
    majority = Counter(labels[train_index].tolist()).most_common(1)[0][0]
    baseline = float(np.mean(labels[test_index] == majority))
    layers = features_by_layer.items() if isinstance(features_by_layer, Mapping) else enumerate(features_by_layer)
    rows = []
    for layer, features in layers:
        x = _as_features(features)  # (examples, features)
        if len(x) != len(labels):
            raise ValueError(f"layer {layer} has {len(x)} feature rows for {len(labels)} labels; pass one row "
                             f"per example at every layer.")
        train_x, test_x = x[train_index], x[test_index]  # (train, features), (test, features)
        probe = fit_probe(train_x, labels[train_index], config)
        correct = int(np.sum(probe.predict(test_x) == labels[test_index]))
        test_accuracy = correct / len(test_index)
        control_accuracy = (fit_probe(train_x, control[train_index], config).accuracy(test_x, control[test_index])
                            if control is not None else float("nan"))
        low, high = wilson_interval(correct, len(test_index))
        rows.append({"layer": layer, "train_accuracy": probe.accuracy(train_x, labels[train_index]),
                     "test_accuracy": test_accuracy, "control_accuracy": control_accuracy,
                     "selectivity": test_accuracy - control_accuracy, "majority_baseline": baseline,
                     "n_test": len(test_index), "ci_low": low, "ci_high": high})
    return rows
