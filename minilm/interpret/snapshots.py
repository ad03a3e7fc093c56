"""The chapter-4 run again, with the model's weights saved along the way: to watch heads form.

`minilm.course_model` keeps only the last checkpoint of its run. This reruns the same recipe (the
same token streams, seed, model and batches, so on the CPU the same losses, step for step) and
saves the weights at step 0 and every `every` steps, cached like the course model itself.

    from minilm.interpret import course_model_snapshots, induction_scores
    snapshots = course_model_snapshots()              # the preset's run: .steps, .history, .folder
    for step in snapshots.steps:
        model = snapshots.load(step)                  # a GPT in eval mode, as it was after `step` steps
        print(step, induction_scores(model, vocab_size=500).max().item())
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minilm import course_model as course_model_module, model as model_module, train as train_module
from minilm.cache import cached_artifact
from minilm.checkpoint import load_checkpoint, save_checkpoint
from minilm.course_model import RECIPES, Recipe, SampleEvery, course_model
from minilm.model import GPT, model_config
from minilm.presets import choose, current_preset
from minilm.runtime import choose_device, seed_everything
from minilm.train import TokenBatches, train

HISTORY = "history.json"


def snapshot_folder(folder: Path, step: int) -> Path:
    """Where the snapshot after `step` steps is saved (a minilm checkpoint folder)."""
    return folder / f"snapshot-{step:06d}"


class SaveEvery:
    """A training callback that saves the model every `every` steps and after the last one."""

    def __init__(self, folder: Path, every: int, last: int):
        self.folder, self.every, self.last = folder, every, last

    def __call__(self, record: dict, model: torch.nn.Module) -> None:
        step = record["step"]
        if step % self.every == 0 or step == self.last:
            save_checkpoint(snapshot_folder(self.folder, step), model, step=step)


@dataclass
class Snapshots:
    """The saved weights of one rerun of the chapter-4 recipe."""

    steps: list[int]  # the steps a snapshot was saved after, 0 (the initialisation) first
    history: list[dict]  # the run's training history: losses per step, samples, validation losses
    folder: Path  # the cached folder: one snapshot-<step> checkpoint per step, and history.json
    recipe: Recipe  # the preset's recipe that was run

    def load(self, step: int, device: torch.device | str | None = None) -> GPT:
        """The model as it was after `step` steps, in eval mode (on the CPU unless `device`)."""
        if step not in self.steps:
            raise ValueError(f"no snapshot after step {step}; the snapshots are at steps {self.steps}.")
        return load_checkpoint(snapshot_folder(self.folder, step), device).model


def course_model_snapshots(preset: str | None = None, every: int | None = None,
                           device: torch.device | str | None = None) -> Snapshots:
    """The preset's chapter-4 run, its weights saved at step 0 and every `every` steps (default: half
    the recipe's eval_every, about 20 snapshots); trained the first time, then read from the cache."""
    preset = preset or current_preset()
    recipe = choose(RECIPES, preset)
    every = max(1, recipe.train.eval_every // 2) if every is None else every
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r}: save a snapshot every 1 or more steps.")
    tokens = course_model(preset, device).tokens  # the same token streams (and the trained model, cached)
    config = model_config(recipe.size, tokens.tokenizer.vocab_size)
    device = choose_device(None if device is None else str(device))

    def build(folder: Path) -> None:
        seed_everything(recipe.train.seed)  # as course_model does: the same initial weights
        model = GPT(config).to(device)
        save = SaveEvery(folder, every, recipe.train.steps)
        save({"step": 0}, model)
        with torch.enable_grad():  # train even when the caller has turned gradients off
            history = train(model, TokenBatches(tokens.streams, recipe.train, device), recipe.train,
                            callbacks=[SampleEvery(tokens.tokenizer, recipe.train.eval_every), save])
        (folder / HISTORY).write_text(json.dumps(history, indent=1), encoding="utf-8")

    inputs = {"model": config.to_dict(), "train": asdict(recipe.train), "tokens": tokens.folder.name, "every": every}
    folder = cached_artifact(f"course-model-snapshots-{preset}", inputs, build,
                             code=(train_module, model_module, course_model_module))
    steps = sorted(int(path.name.split("-")[1]) for path in folder.glob("snapshot-*"))
    history = json.loads((folder / HISTORY).read_text(encoding="utf-8"))
    return Snapshots(steps=steps, history=history, folder=folder, recipe=recipe)
