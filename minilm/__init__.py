"""minilm: the small language model that the course builds, one chapter at a time.

Chapter by chapter the package gains `data` and `tokenizer` (1), `attention` (2), `model` (3),
`train` (4), `evaluate` (5) and the applications (6). The core every chapter uses:

    runtime  the device (cuda, then mps, then cpu; MINILM_DEVICE), seeding, CPU threads
    presets  run sizes: MINILM_PRESET = smoke | cpu | gpu
    cache    artifacts that later notebooks reuse, keyed by their inputs (MINILM_CACHE)
    report   the environment report that opens every notebook
"""
from minilm.cache import cache_root, cached_artifact
from minilm.presets import choose, current_preset
from minilm.report import environment_report
from minilm.runtime import DeviceError, choose_device, confirm_device, seed_everything, set_threads

__version__ = "0.1.0"

__all__ = ["DeviceError", "cache_root", "cached_artifact", "choose", "choose_device", "confirm_device",
           "current_preset", "environment_report", "seed_everything", "set_threads"]
