"""Chapter 8: inside the model. One idea per module:

    internals     the residual stream, attention weights and head outputs, recorded with hooks;
                  heads ablated (zero or mean) and the residual stream patched
    heads         induction, previous-token and copy scores, the loss on repeated sequences, what
                  removing each head costs per kind of token
    lens          the logit lens: every residual stream read through the final norm and the head
    snapshots     the chapter-4 run again, its weights saved along the way
"""
from minilm.interpret.heads import (RepeatLosses, attention_at_offset, copy_scores, format_effects, head_ablation_effects,
                                    induction_scores, previous_token_scores, repeated_sequence_losses,
                                    repeated_tokens, target_losses)
from minilm.interpret.internals import (Internals, Recording, ablate_heads, attention_weights, hook_residual,
                                        mean_head_outputs, patch_residual, record_internals)
from minilm.interpret.lens import LensLosses, lens_losses, lens_top_tokens, logit_lens
from minilm.interpret.snapshots import Snapshots, course_model_snapshots

__all__ = ["Internals", "LensLosses", "Recording", "RepeatLosses", "Snapshots", "ablate_heads",
           "attention_at_offset", "attention_weights", "copy_scores", "course_model_snapshots", "format_effects",
           "head_ablation_effects", "hook_residual", "induction_scores", "lens_losses", "lens_top_tokens",
           "logit_lens", "mean_head_outputs", "patch_residual", "previous_token_scores", "record_internals",
           "repeated_sequence_losses", "repeated_tokens", "target_losses"]
