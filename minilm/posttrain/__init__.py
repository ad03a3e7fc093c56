"""What turns a pretrained model into an assistant. One method per module:

    finetune   supervised fine-tuning on (prompt, answer) examples, the loss on the answer only (chapter 6)

Import from the modules themselves (`from minilm.posttrain.finetune import finetune`): this file
imports nothing, so that `apps` and `posttrain` can use each other without a cycle.
"""
