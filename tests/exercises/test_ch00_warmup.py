import pytest
import torch

from tests.exercises.harness import load_chapter

ex = load_chapter("ch00_warmup")


@pytest.mark.parametrize("n", [1, 3, 17])
def test_mean_squared_error_matches_torch(n):
    generator = torch.Generator().manual_seed(n)
    predictions, targets = torch.randn(2, n, dtype=torch.float64, generator=generator)
    expected = torch.nn.functional.mse_loss(predictions, targets).item()
    assert ex.mean_squared_error(predictions.tolist(), targets.tolist()) == pytest.approx(expected, rel=1e-12)


def test_mean_squared_error_rejects_bad_input():
    with pytest.raises(ValueError):
        ex.mean_squared_error([], [])
    with pytest.raises(ValueError):
        ex.mean_squared_error([1.0], [1.0, 2.0])
