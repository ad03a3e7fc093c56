"""Chapter 2 exercises, checked against PyTorch's softmax, attention and multi-head layout."""
import pytest
import torch
import torch.nn.functional as F

from tests.exercises.harness import load_chapter

ex = load_chapter("ch02_attention")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stable_softmax_matches_torch(dtype):
    scores = torch.randn(5, 9, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 4
    torch.testing.assert_close(ex.stable_softmax(scores), torch.softmax(scores, dim=-1))


def test_stable_softmax_survives_huge_scores():
    scores = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4]])
    result = ex.stable_softmax(scores)
    assert torch.isfinite(result).all(), "exp(1e4) overflows: subtract each row's maximum first"
    torch.testing.assert_close(result, torch.softmax(scores, dim=-1))


def test_stable_softmax_is_built_by_hand(monkeypatch):
    scores = torch.randn(3, 4)
    expected = torch.softmax(scores, dim=-1)

    def forbidden(*args, **kwargs):
        raise AssertionError("build the softmax from torch.exp and sums, not torch.softmax")

    for owner in (torch, F, torch.Tensor):
        monkeypatch.setattr(owner, "softmax", forbidden)
    torch.testing.assert_close(ex.stable_softmax(scores), expected)


@pytest.mark.parametrize("length", [1, 2, 7])
def test_causal_mask_matches_torch_is_causal(length):
    mask = ex.causal_mask(length)
    assert mask.dtype == torch.bool and mask.shape == (length, length)
    q, k, v = torch.randn(3, 1, length, 4, dtype=torch.float64)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_causal_mask_rejects_empty():
    with pytest.raises(ValueError):
        ex.causal_mask(0)


@pytest.mark.parametrize("t, d_k, d_v", [(1, 3, 2), (6, 4, 5), (9, 16, 8)])
def test_attend_one_query_matches_torch(t, d_k, d_v):
    generator = torch.Generator().manual_seed(t)
    query = torch.randn(d_k, dtype=torch.float64, generator=generator)
    keys = torch.randn(t, d_k, dtype=torch.float64, generator=generator)
    values = torch.randn(t, d_v, dtype=torch.float64, generator=generator)
    output, weights = ex.attend_one_query(query, keys, values)
    expected = F.scaled_dot_product_attention(query[None], keys, values)[0]
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, torch.softmax(keys @ query / d_k ** 0.5, dim=-1))


def test_attend_one_query_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        ex.attend_one_query(torch.randn(3), torch.randn(5, 4), torch.randn(5, 2))
    with pytest.raises(ValueError):
        ex.attend_one_query(torch.randn(4), torch.randn(5, 4), torch.randn(6, 2))


def test_split_and_merge_heads_use_torch_multihead_layout():
    """Per-head attention on split heads, merged, equals nn.MultiheadAttention without projections."""
    torch.manual_seed(0)
    d_model, n_heads = 12, 3
    x = torch.randn(2, 5, d_model, dtype=torch.float64)
    heads = ex.split_heads(x, n_heads)
    assert heads.shape == (2, n_heads, 5, d_model // n_heads)
    assert torch.equal(ex.merge_heads(heads), x)
    reference = torch.nn.MultiheadAttention(d_model, n_heads, bias=False, batch_first=True,
                                            dtype=torch.float64)
    with torch.no_grad():  # identity projections: only the head layout remains
        reference.in_proj_weight.copy_(torch.eye(d_model, dtype=torch.float64).repeat(3, 1))
        reference.out_proj.weight.copy_(torch.eye(d_model, dtype=torch.float64))
    expected, _ = reference(x, x, x)
    ours = ex.merge_heads(F.scaled_dot_product_attention(heads, heads, heads))
    torch.testing.assert_close(ours, expected)


def test_split_heads_rejects_uneven_heads():
    with pytest.raises(ValueError):
        ex.split_heads(torch.randn(1, 2, 10), 3)
