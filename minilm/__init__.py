"""minilm: the small language model that the course builds, one chapter at a time.

The core every chapter uses:

    runtime     the device (cuda, then mps, then cpu; MINILM_DEVICE), seeding, CPU threads
    presets     run sizes: MINILM_PRESET = smoke | cpu | gpu
    cache       artifacts that later notebooks reuse, keyed by their inputs (MINILM_CACHE)
    report      the environment report that opens every notebook

What each chapter adds:

    1 data        sources, cleaning, deduplication, quality filters, the story world, mixing, splits
      tokenizer   characters and byte-level BPE (training in bpe_train); tokens: the token stream
    2 attention   softmax(QKᵀ/√d_k)V, masks, multi-head attention
    3 model       GPT-2 and Llama-style GPTs; positions, generate (sampling, KV cache), interop
    4 train       the training loop; checkpoint; cli (python -m minilm train | generate)
      distributed torchrun, DDP and FSDP; streaming: corpora bigger than memory
    5 evaluate    loss, perplexity, bits per byte, the floor, n-grams, BLEU, ROUGE-L, diversity, calibration
    6 apps        tasks, task_eval, chat, classify, code_completion, serve: the applications
      posttrain   finetune: supervised fine-tuning
   6b posttrain   preferences, dpo, rl, lora: preference tuning, reinforcement from a reward, adapters
    7 transfer    what general data buys: pretraining variants, fine-tuning on a share of the labels;
      data        grows stages, contamination and quality_classifier
    8 interpret   inside the model: attention, heads, the logit lens, probes, ablation, patching
      safety      privacy, canaries, abstention, bias, prompt injection, a sandbox for generated code
"""
from minilm.cache import cache_root, cached_artifact
from minilm.presets import choose, current_preset
from minilm.report import environment_report
from minilm.runtime import DeviceError, choose_device, confirm_device, seed_everything, set_threads

__version__ = "0.1.0"

__all__ = ["DeviceError", "cache_root", "cached_artifact", "choose", "choose_device", "confirm_device",
           "current_preset", "environment_report", "seed_everything", "set_threads"]
