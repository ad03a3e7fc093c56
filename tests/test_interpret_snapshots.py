"""minilm.interpret.snapshots: the chapter-4 run again, at the smoke preset in a temporary cache; the
same recipe and seed give the course model's losses and weights, and step 0 is the initialisation."""
import pytest
import torch

from minilm.course_model import course_model
from minilm.interpret import course_model_snapshots
from minilm.model import GPT, model_config
from minilm.runtime import seed_everything

TIMING = {"seconds", "tokens_per_s"}  # wall-clock measurements: the only numbers two runs may not share


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield course_model("smoke", device="cpu"), course_model_snapshots("smoke", device="cpu")


def test_snapshots_are_saved_at_step_zero_every_few_steps_and_at_the_end(runs):
    course, snapshots = runs
    steps = course.recipe.train.steps
    assert snapshots.steps == list(range(0, steps + 1, course.recipe.train.eval_every // 2))
    assert snapshots.steps[-1] == steps
    model = snapshots.load(steps)
    assert isinstance(model, GPT) and not model.training
    with pytest.raises(ValueError, match="no snapshot after step 3"):
        snapshots.load(3)


def test_the_last_snapshot_is_the_course_models_final_weights(runs):
    course, snapshots = runs
    last = snapshots.load(snapshots.steps[-1]).state_dict()
    final = course.model.state_dict()
    assert last.keys() == final.keys()
    for name in final:
        assert torch.equal(last[name], final[name]), name


def test_the_rerun_has_the_course_models_losses(runs):
    course, snapshots = runs
    assert len(snapshots.history) == len(course.history)
    for ours, theirs in zip(snapshots.history, course.history):
        assert ours.keys() == theirs.keys()
        for key in ours.keys() - TIMING:
            if isinstance(theirs[key], float):
                assert ours[key] == pytest.approx(theirs[key], abs=1e-6), (ours["step"], key)
            else:
                assert ours[key] == theirs[key], (ours["step"], key)  # steps, token counts, the samples
    assert any("val_loss" in record for record in snapshots.history[1:])


def test_step_zero_is_a_freshly_initialised_model(runs):
    course, snapshots = runs
    seed_everything(course.recipe.train.seed)
    fresh = GPT(model_config(course.recipe.size, course.tokenizer.vocab_size)).state_dict()
    start = snapshots.load(0).state_dict()
    for name in fresh:
        assert torch.equal(start[name], fresh[name]), name
    trained = snapshots.load(snapshots.steps[-1]).state_dict()
    assert not torch.equal(start["blocks.0.attention.qkv.weight"], trained["blocks.0.attention.qkv.weight"])


def test_other_intervals_are_cached_apart_and_keep_the_last_step(runs, monkeypatch):
    course, snapshots = runs
    monkeypatch.setenv("MINILM_CACHE", str(snapshots.folder.parent))
    assert course_model_snapshots("smoke", device="cpu").folder == snapshots.folder  # from the cache
    steps = course.recipe.train.steps
    sparse = course_model_snapshots("smoke", every=7, device="cpu")
    assert sparse.folder != snapshots.folder and sparse.steps == [*range(0, steps, 7), steps]
    last, again = snapshots.load(steps).state_dict(), sparse.load(steps).state_dict()
    assert all(torch.equal(last[name], again[name]) for name in last)  # the same run, saved less often
    with pytest.raises(ValueError, match="every=0"):
        course_model_snapshots("smoke", every=0, device="cpu")
