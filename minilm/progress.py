"""Progress bars for long loops (BPE training, encoding, training, streaming), silenced by the checks.

    for text in progress_bar(texts, enabled=True, desc="encoding"): ...
    with progress_bar(total=steps, desc="training") as bar: bar.update(1)
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_bar(iterable=None, enabled: bool = True, **options) -> tqdm:
    """tqdm.auto's progress bar when `enabled`, else a silent one.

    TQDM_DISABLE=1 (set by the checks) silences it too, also in a notebook, where tqdm's widget
    bar would ignore it.
    """
    silenced = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")
    return tqdm(iterable, disable=not enabled or silenced, **options)
