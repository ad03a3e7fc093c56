"""What turns a pretrained model into an assistant. One method per module:

    finetune     supervised fine-tuning on (prompt, answer) examples, the loss on the answer only (chapter 6)
    preferences  preference pairs from the story world: the true answer against a plausible wrong one
    dpo          direct preference optimisation: the loss, training, preference accuracy and KL drift
    rl           reinforcement from a verifiable reward: sampled groups, group-relative advantages, a KL penalty
    lora         low-rank adapters: a frozen weight plus (α / r) · B A, and merging it back

Import from the modules themselves (`from minilm.posttrain.finetune import finetune`): this file
imports nothing, so that `apps` and `posttrain` can use each other without a cycle.
"""
