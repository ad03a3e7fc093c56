"""Chapter 7: what general data buys, measured. Small models pretrained on one corpus each, then
fine-tuned on a share of a task's labelled examples, or measured on held-out text of every source.

    sizes = choose(EXPERIMENT_SIZES)                              # the preset's run sizes
    tokens = encode_with(corpus, shared)                          # one vocabulary for every corpus
    model = pretrained("mix", tokens, sizes.size, sizes.pretrain)  # trained once, then cached
    bpb = source_bits_per_byte(model, held_out_tokens)            # {source: bits per byte}
    data = task_data(sizes, exclude=story_texts)                  # {task: TaskData(pool, test)}
    rows = transfer_grid({"none": None, "mix": model}, tokenizer, data, sizes)

The transfer experiment asks: after pretraining on corpus X, how well does a model learn a task
from k labelled examples? `transfer_grid` fine-tunes every pretrained model (and a randomly
initialised one, "none") on k = fraction × labelled examples of each task, for several seeds (the
seed picks the k examples, their order and, for "none", the initial weights), always for the same
number of steps, and scores it on the same test examples with chapter 6's metric. Fraction 0 is the
zero-shot row: the pretrained model as it is. Each cell is cached as it finishes, so an interrupted
grid loses at most the cell it was running.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import torch

from minilm import model as model_module, train as train_module
from minilm.posttrain import finetune as finetune_module
from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint
from minilm.data import StoryWorld
from minilm.evaluate import bits_per_byte, token_losses
from minilm.posttrain.finetune import finetune
from minilm.model import GPT, model_config
from minilm.progress import progress_bar
from minilm.runtime import seed_everything
from minilm.apps.task_eval import evaluate_task
from minilm.apps.tasks import Example, story_examples, story_split
from minilm.tokens import PreparedTokens
from minilm.train import TokenBatches, TrainConfig, train


@dataclass(frozen=True)
class ExperimentSizes:
    """Chapter 7's run sizes for one preset: the smallest models that show each effect."""

    vocab_size: int  # the shared BPE vocabulary, trained on the general mix
    size: str  # model size of the transfer experiment (2 layers at least: answering copies from the prompt)
    pretrain: TrainConfig  # its pretraining run, the same for every corpus (equal compute)
    probe_size: str  # model size of the pipeline-step and mixing runs (bits per byte only)
    probe: TrainConfig  # their training run, the same for every corpus
    labelled: int  # labelled examples per task at fraction 1.0
    test: int  # test examples per task (every cell is scored on the same ones)
    finetune: TrainConfig  # the fine-tuning run, the same for every fraction and starting point,
    task_steps: dict[str, int]  # but its steps per task: a short answer teaches few tokens per step
    seeds: tuple[int, ...]  # fine-tuning seeds per cell: the spread between them is the error bar
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)  # shares of the labelled examples
    tasks: tuple[str, ...] = ("qa", "translation", "mood")  # chapter 6's story tasks measured
    mixes: tuple[dict, ...] = field(default_factory=tuple)  # the mixing sweep: source weights per run

    def finetune_run(self, task: str, seed: int) -> TrainConfig:
        """The fine-tuning run of one task and seed (no validation: the test set scores the run)."""
        steps = self.task_steps[task]
        return replace(self.finetune, steps=steps, warmup_steps=max(1, steps // 10), seed=seed, eval_every=0)


MIXES = ({"prose": 0.6, "code": 0.3, "stories": 0.1}, {"prose": 0.5, "code": 0.25, "stories": 0.25},
         {"prose": 0.4, "code": 0.2, "stories": 0.4}, {"prose": 0.2, "code": 0.2, "stories": 0.6},
         {"prose": 0.2, "code": 0.4, "stories": 0.4})  # the third is chapter 1's mix


def _run(steps: int, batch_size: int, lr: float, eval_every: int = 0) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch_size, context_length=256, lr=lr, min_lr=lr / 10,
                       warmup_steps=max(1, steps // 10), eval_every=eval_every, eval_batches=4)


EXPERIMENT_SIZES = {
    "smoke": ExperimentSizes(vocab_size=512, size="nano", pretrain=_run(20, 4, 1e-2),
                             probe_size="nano", probe=_run(10, 4, 1e-2), labelled=40, test=12,
                             finetune=replace(_run(8, 4, 1e-2), weight_decay=0.0), seeds=(0, 1),
                             task_steps={"qa": 8, "translation": 8, "mood": 8}, mixes=MIXES[1:3]),
    "cpu": ExperimentSizes(vocab_size=1024, size="tiny", pretrain=_run(800, 8, 1e-2, 200),
                           probe_size="nano", probe=_run(400, 8, 1e-2, 100), labelled=1000, test=100,
                           finetune=replace(_run(300, 8, 1e-2), weight_decay=0.0), seeds=(0, 1, 2),
                           task_steps={"qa": 160, "translation": 300, "mood": 80}, mixes=MIXES),
    "gpu": ExperimentSizes(vocab_size=1024, size="small", pretrain=_run(4000, 32, 3e-3, 500),
                           probe_size="tiny", probe=_run(1500, 32, 3e-3, 500), labelled=4000, test=300,
                           finetune=replace(_run(600, 16, 3e-3), weight_decay=0.0), seeds=(0, 1, 2, 3, 4),
                           task_steps={"qa": 1200, "translation": 1200, "mood": 400}, mixes=MIXES),
}


@dataclass
class Pretrained:
    """A pretrained model and its cache folder's name (which names it in the grid's cache keys)."""

    model: GPT
    key: str


def pretrained(name: str, tokens: PreparedTokens, size: str, config: TrainConfig) -> Pretrained:
    """A model of `size` trained on tokens.streams["train"] (validated on "validation"): once, then cached."""
    gpt_config = model_config(size, tokens.tokenizer.vocab_size)

    def build(folder: Path) -> None:
        seed_everything(config.seed)
        model = GPT(gpt_config)
        train(model, TokenBatches(tokens.streams, config, "cpu"), config, folder, tokenizer=tokens.tokenizer)

    inputs = {"name": name, "model": gpt_config.to_dict(), "train": asdict(config), "tokens": tokens.folder.name}
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", name)  # a folder name: "mix 0.40/0.40" -> "mix-0.40-0.40"
    folder = cached_artifact(f"pretrained-{slug}", inputs, build, code=(train_module, model_module))
    return Pretrained(load_checkpoint(folder).model, folder.name)


def source_bits_per_byte(model: torch.nn.Module, tokens: PreparedTokens) -> dict[str, float]:
    """Bits per byte of `model` on each stream of `tokens` (one per source, say), as chapter 5 measures them."""
    block = model.config.context_length
    result = {}
    for name, stream in tokens.streams.items():
        if len(stream) < 2:
            raise ValueError(f"the stream {name!r} holds {len(stream)} token(s); bits per byte need at least two "
                             f"(a document and its end): leave out the sources with no held-out text.")
        losses = token_losses(model, stream.tokens, block_size=min(block, len(stream) - 1))  # (windows, block)
        result[name] = bits_per_byte(losses.mean().item(), len(stream), tokens.text_bytes[name])
    return result


@dataclass
class TaskData:
    """One task's labelled pool (fraction 1.0) and its fixed test examples."""

    pool: list[Example]
    test: list[Example]


def task_data(sizes: ExperimentSizes, exclude: Iterable[str] = (), seed: int = 70) -> dict[str, TaskData]:
    """Labelled pools and test sets for every task, from new stories (none of them in `exclude`)."""
    stories = sizes.labelled + 10  # mood has one example per story, the other tasks more
    train_stories, test_stories = story_split(StoryWorld(), train=stories, test=sizes.test, seed=seed,
                                              exclude=exclude)
    data = {}
    for task in sizes.tasks:
        pool, test = story_examples(task, train_stories), story_examples(task, test_stories)
        random.Random(seed).shuffle(pool)
        random.Random(seed + 1).shuffle(test)
        data[task] = TaskData(pool[:sizes.labelled], test[:sizes.test])
    return data


def subset_size(pool_size: int, fraction: float) -> int:
    """How many labelled examples a fraction of the pool means: at least one (none at fraction 0)."""
    return max(1, round(fraction * pool_size)) if fraction > 0 else 0


def labelled_subset(pool: Sequence[Example], fraction: float, seed: int) -> list[Example]:
    """subset_size(len(pool), fraction) examples of the pool, drawn by `seed`."""
    return random.Random(seed).sample(list(pool), subset_size(len(pool), fraction))


def fine_tuned_score(model: GPT | None, tokenizer, data: TaskData, fraction: float, seed: int,
                     sizes: ExperimentSizes) -> float:
    """The test score after fine-tuning `model` (None: a new random model of sizes.size) on a labelled subset."""
    if model is None:
        torch.manual_seed(seed)
        model = GPT(model_config(sizes.size, tokenizer.vocab_size)).eval()
    if fraction > 0:
        examples = labelled_subset(data.pool, fraction, seed)
        model = finetune(model, tokenizer, examples, examples, sizes.finetune_run(data.test[0].task, seed)).model
    return evaluate_task(model, tokenizer, data.test).score


def transfer_grid(models: dict[str, Pretrained | None], tokenizer, data: dict[str, TaskData],
                  sizes: ExperimentSizes, progress: bool = True) -> list[dict]:
    """One row per (pretraining, task, fraction, seed) with the test score after fine-tuning, plus
    the zero-shot rows (fraction 0). A name mapped to None is a randomly initialised model."""
    cells = [(name, task, fraction, seed) for name in models for task in data
             for fraction in (0.0, *sizes.fractions) for seed in (sizes.seeds if fraction else sizes.seeds[:1])]
    rows = []
    for name, task, fraction, seed in progress_bar(cells, progress, desc="fine-tuning", unit=" runs"):
        start = models[name]

        def build(folder: Path) -> None:
            score = fine_tuned_score(start and start.model, tokenizer, data[task], fraction, seed, sizes)
            (folder / "score.json").write_text(json.dumps({"score": score}))

        inputs = {"model": start.key if start else "random", "size": sizes.size, "task": task,
                  "fraction": fraction, "seed": seed, "finetune": asdict(sizes.finetune_run(task, seed)),
                  "pool": [asdict(e) for e in data[task].pool], "test": [asdict(e) for e in data[task].test]}
        folder = cached_artifact("transfer-cell", inputs, build, code=(finetune_module, train_module, model_module))
        rows.append({"pretraining": name, "task": task, "fraction": fraction,
                     "labelled": subset_size(len(data[task].pool), fraction), "seed": seed,
                     "score": json.loads((folder / "score.json").read_text())["score"]})
    return rows


def mean_and_interval(scores: Sequence[float]) -> tuple[float, float]:
    """The mean of a few seeds' scores and the half-width of its 95% t-interval (0 for one seed)."""
    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return mean, 0.0
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    return mean, T_975[min(n - 1, len(T_975)) - 1] * std / math.sqrt(n)


# Student's t quantile 0.975 for 1..10 degrees of freedom (tests check them against float64 maths)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
