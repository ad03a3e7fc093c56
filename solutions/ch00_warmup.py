"""Chapter 0 warm-up, solved."""


def mean_squared_error(predictions: list[float], targets: list[float]) -> float:
    """The mean of (prediction - target)² over paired lists of the same, non-zero length.

    Raise ValueError if the lists are empty or differ in length.
    >>> mean_squared_error([1.0, 2.0], [1.0, 4.0])
    2.0
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets; pair them one to one.")
    if not predictions:
        raise ValueError("no predictions: the mean of nothing is undefined.")
    return sum((p - t) ** 2 for p, t in zip(predictions, targets)) / len(predictions)
