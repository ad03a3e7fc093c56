"""minilm.positions against the formulas in float64 and against Hugging Face's Llama RoPE."""
import math

import pytest
import torch

from minilm.positions import (LearnedPositions, RotaryEmbedding, SinusoidalPositions, apply_rope, rope_angles,
                              sinusoidal_encoding)


def test_sinusoidal_encoding_matches_the_formula_term_by_term():
    length, dim = 20, 10
    table = sinusoidal_encoding(length, dim)
    for p in range(length):
        for i in range(dim // 2):
            angle = p / 10_000 ** (2 * i / dim)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_position_modules_slice_from_start():
    learned, fixed = LearnedPositions(12, 8), SinusoidalPositions(12, 8)
    torch.testing.assert_close(learned(4, start=3), learned.table.weight[3:7])
    torch.testing.assert_close(fixed(4, start=3), sinusoidal_encoding(12, 8)[3:7])
    assert not fixed.state_dict()  # a fixed table is not a weight to save


@pytest.mark.parametrize("module", [LearnedPositions(12, 8), SinusoidalPositions(12, 8), RotaryEmbedding(8, 12)])
def test_positions_past_the_context_are_an_error(module):
    with pytest.raises(ValueError, match="do not fit in a context of 12"):
        module(5, start=8)


def test_odd_sizes_are_an_error():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(4, 7)
    with pytest.raises(ValueError, match="even"):
        rope_angles(4, 7)


def test_rope_matches_hugging_face_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    head_dim, length, theta = 16, 24, 500.0
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=length,
                         rope_theta=theta)  # transformers 5 keeps it in rope_parameters
    q, k = torch.randn(2, 2, 4, length, head_dim).unbind(0)  # (batch, heads, time, head_dim) each
    cos_hf, sin_hf = LlamaRotaryEmbedding(config=config)(q, torch.arange(length)[None])
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    cos, sin = RotaryEmbedding(head_dim, length, theta)(length)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_hf, rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_only_on_the_distance():
    head_dim, length = 8, 40
    rope = RotaryEmbedding(head_dim, length).double()
    q, k = torch.randn(2, head_dim, dtype=torch.float64)
    cos, sin = rope(length)

    def score(m, n):  # query at position m, key at position n
        return (apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n])).item()

    for distance in (0, 3, 17):
        scores = [score(m + distance, m) for m in (0, 5, 20)]
        assert scores == pytest.approx([scores[0]] * 3, abs=1e-5)
    assert score(0, 0) == pytest.approx((q @ k).item())  # position 0 is not rotated


def test_rope_is_a_rotation_it_keeps_lengths():
    cos, sin = RotaryEmbedding(16, 50)(50)
    x = torch.randn(3, 50, 16)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
