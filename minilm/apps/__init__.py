"""Chapter 6: what a pretrained model is used for. One application per module:

    tasks            the story world's tasks as (prompt, answer) examples: translation, questions,
                     dialogue, summaries, sentiment, code
    task_eval        scoring answers: exact match, BLEU, ROUGE-L, Wilson intervals, decoding settings
    chat             the chat format, its special tokens and instruction tuning with an answer-only loss
    classify         sentiment three ways: bag of words, the model's hidden state, zero-shot prompts
    code_completion  a model for Python functions, scored by whether the completion parses and runs
    serve            an HTTP server for a checkpoint: python -m minilm serve

Fine-tuning itself, the first step after pretraining, lives with the rest of post-training in
`minilm.posttrain`. Import from the modules themselves (`from minilm.apps.chat import format_chat`):
this file imports nothing, so that `apps` and `posttrain` can use each other without a cycle.
"""
