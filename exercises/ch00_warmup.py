"""Chapter 0 warm-up: one small exercise to try the checking harness.

Write the function below, then check it with:

    ./course exercise ch00_warmup

(or `pytest tests/exercises/test_ch00_warmup.py --student`). The solution is in solutions/ch00_warmup.py.
"""


def mean_squared_error(predictions: list[float], targets: list[float]) -> float:
    """The mean of (prediction - target)² over paired lists of the same, non-zero length.

    Raise ValueError if the lists are empty or differ in length.
    >>> mean_squared_error([1.0, 2.0], [1.0, 4.0])
    2.0
    """
    raise NotImplementedError
