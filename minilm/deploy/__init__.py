"""Chapter 6c: deploying the model — many users at once, a standard API, a smaller model, real engines.

    batching    continuous batching: concurrent requests decoded together through one KV cache
    openai_api  the OpenAI-compatible wire format (/v1/models, /v1/completions, /v1/chat/completions)
    quantize    weight-only int8 quantisation by hand (per-channel absmax scales)
    export      a Hugging Face-format folder (config, safetensors, tokenizer) for serving engines

The HTTP server itself is chapter 6's `minilm.apps.serve`. Nothing is imported here, so that each
module is loaded only by what uses it.
"""
