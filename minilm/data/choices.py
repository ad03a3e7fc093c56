"""Random choices that remember their probability: the engine under the story world.

A story generator is ordinary Python code that calls `chooser.pick(...)` whenever it decides
something. The chooser makes the decision and adds the natural log of its probability to
`chooser.log_prob`, so a finished story knows exactly how likely it was:

    chooser = SamplingChooser(random.Random(0))
    name = chooser.pick(["Mia", "Tom", "Ben"])              # uniform: log(1/3)
    ending = chooser.pick(["happy", "sad"], [0.9, 0.1])     # weighted: log(0.9) or log(0.1)

The same generator code can be run by `enumerate_runs`, which replays it once for every possible
sequence of decisions (an odometer over the choices), so a small world can be listed completely:
that is how the tests prove that the probabilities of all stories sum to one.
"""
from __future__ import annotations

import abc
import bisect
import itertools
import math
import random
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Chooser(abc.ABC):
    """Makes decisions and keeps the log-probability of the decisions made so far."""

    def __init__(self) -> None:
        self.log_prob = 0.0  # natural log of the probability of every decision made so far

    def pick(self, options: Sequence[T], weights: Sequence[float] | None = None) -> T:
        """One of `options`: uniformly, or with probabilities proportional to `weights`."""
        if weights is not None and len(weights) != len(options):
            raise ValueError(f"{len(options)} options but {len(weights)} weights; give one weight per option.")
        index = self._index(options, weights)
        if weights is None:
            self.log_prob -= math.log(len(options))
        else:
            self.log_prob += math.log(weights[index] / math.fsum(weights))
        return options[index]

    @abc.abstractmethod
    def _index(self, options: Sequence[T], weights: Sequence[float] | None) -> int:
        """The index of the option taken (each kind of chooser decides differently)."""


class SamplingChooser(Chooser):
    """Draws every decision from a `random.Random` (seeded by the caller, so runs repeat)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def _index(self, options, weights) -> int:
        if weights is None:
            return self.rng.randrange(len(options))
        cumulative = list(itertools.accumulate(weights))
        return min(bisect.bisect_right(cumulative, self.rng.random() * cumulative[-1]), len(options) - 1)


class ReplayChooser(Chooser):
    """Follows a given list of option indices, then takes option 0; records every choice's arity."""

    def __init__(self, prefix: list[int]) -> None:
        super().__init__()
        self.prefix = prefix
        self.taken: list[int] = []   # the index taken at each decision
        self.arity: list[int] = []   # how many options (of non-zero weight) each decision had

    def _allowed(self, options, weights) -> list[int]:
        return [i for i in range(len(options)) if weights is None or weights[i] > 0]

    def _index(self, options, weights) -> int:
        allowed = self._allowed(options, weights)
        step = len(self.taken)
        position = self.prefix[step] if step < len(self.prefix) else 0
        self.taken.append(position)
        self.arity.append(len(allowed))
        return allowed[position]


class LongestWordChooser(ReplayChooser):
    """Like ReplayChooser, but a uniform choice between words only considers the longest word.

    Enumerating with it visits every structure of a story once, filled with the longest words, so
    the longest text it yields is the longest text the generator can write.
    """

    def _allowed(self, options, weights) -> list[int]:
        if weights is None and all(isinstance(option, str) for option in options):
            return [max(range(len(options)), key=lambda i: len(options[i]))]
        return super()._allowed(options, weights)


def enumerate_runs(run: Callable[[Chooser], R],
                   chooser_class: type[ReplayChooser] = ReplayChooser) -> Iterator[tuple[R, float]]:
    """Every possible outcome of `run(chooser)` with its log-probability, one per decision sequence.

    Works like an odometer: replay the decisions taken last time, advance the last one that still
    has options left, and take option 0 for every decision after it.
    """
    prefix: list[int] = []
    while True:
        chooser = chooser_class(prefix)
        result = run(chooser)
        yield result, chooser.log_prob
        taken, arity = chooser.taken, chooser.arity
        step = len(taken) - 1
        while step >= 0 and taken[step] + 1 >= arity[step]:
            step -= 1
        if step < 0:
            return
        prefix = taken[:step] + [taken[step] + 1]
