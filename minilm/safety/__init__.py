"""Chapter 8, safety: what a model takes in from its data, and what its output is allowed to do.

    continued   continue training the chapter-4 model on other texts (cached): the experiments' base
    privacy     PII masking: e-mail addresses, API-key-like secrets, phone numbers, IPv4 addresses
    canaries    planted secrets and their exposure (Carlini et al., 2019), raw and after masking
    abstention  questions the story does not answer: hallucination, and learning to say "I don't know"
    bias        a skewed story source, the mood-name association a model learns, and rebalancing
    sandbox     running code the model wrote: a subprocess with resource limits and no network
    injection   prompt injection against the chat format: what the format guards, and what it cannot
"""
from minilm.safety.abstention import ABSTAIN, abstention_models, abstention_report, coverage_curve
from minilm.safety.bias import bias_experiment, mood_association, rebalanced, skewed_stories
from minilm.safety.canaries import Canary, canary_experiment, exposure, extracted, make_canaries, plant
from minilm.safety.continued import CONTINUED_SIZES, continue_training
from minilm.safety.injection import audit_injection, injection_cases, parse_transcript
from minilm.safety.privacy import PiiMatch, find_pii, mask_documents, mask_pii
from minilm.safety.sandbox import SandboxLimits, SandboxResult, check_completion, run_untrusted

__all__ = ["ABSTAIN", "abstention_models", "abstention_report", "bias_experiment", "coverage_curve",
           "mood_association", "rebalanced", "skewed_stories", "CONTINUED_SIZES", "Canary", "PiiMatch", "SandboxLimits", "SandboxResult", "audit_injection",
           "canary_experiment", "check_completion", "continue_training", "exposure", "extracted", "find_pii",
           "injection_cases", "make_canaries", "mask_documents", "mask_pii", "parse_transcript", "plant",
           "run_untrusted"]
