"""Chapter 2 exercises, checked against PyTorch's softmax, scaled_dot_product_attention and
nn.MultiheadAttention, minilm's MultiHeadAttention and brute force."""
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


def _heads_reference(x, w_q, w_k, w_v, w_o, n_heads, mask=None):
    """PyTorch's own fused attention on heads split by reshape: an independent multi-head reference."""
    batch, time, d_model = x.shape
    q, k, v = ((x @ w.T).reshape(batch, time, n_heads, d_model // n_heads).transpose(1, 2) for w in (w_q, w_k, w_v))
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (batch, heads, time, head_dim)
    return heads.transpose(1, 2).reshape(batch, time, d_model) @ w_o.T


@pytest.mark.parametrize("n_heads, d_model", [(1, 4), (2, 8), (3, 12), (4, 32)])
@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_torch_multihead_attention(n_heads, d_model, causal):
    torch.manual_seed(n_heads)
    time = 7
    reference = torch.nn.MultiheadAttention(d_model, n_heads, bias=False, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, time, d_model, dtype=torch.float64) * 2
    future = torch.ones(time, time, dtype=torch.bool).triu(1) if causal else None  # PyTorch: True = may NOT attend
    expected, _ = reference(x, x, x, attn_mask=future, need_weights=False)
    w_q, w_k, w_v = reference.in_proj_weight.detach().chunk(3)
    mask = ~future if causal else None  # ours: True = may attend
    ours = ex.multi_head_attention(x, w_q, w_k, w_v, reference.out_proj.weight.detach(), n_heads, mask=mask)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, expected)


def test_multi_head_attention_takes_a_padding_and_causal_mask():
    generator = torch.Generator().manual_seed(0)
    d_model, n_heads, time = 12, 3, 6
    x = torch.randn(3, time, d_model, dtype=torch.float64, generator=generator)
    w_q, w_k, w_v, w_o = torch.randn(4, d_model, d_model, dtype=torch.float64, generator=generator) / d_model ** 0.5
    lengths = torch.tensor([6, 4, 1])
    causal = torch.ones(time, time, dtype=torch.bool).tril()  # (time, time)
    real = torch.arange(time)[None, :] < lengths[:, None]  # (batch, time): not padding
    mask = causal & real[:, None, None, :]  # (batch, 1, time, time)
    expected = _heads_reference(x, w_q, w_k, w_v, w_o, n_heads, mask=mask)
    torch.testing.assert_close(ex.multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads, mask=mask), expected)
    unmasked = _heads_reference(x, w_q, w_k, w_v, w_o, n_heads)
    assert not torch.allclose(expected, unmasked), "the mask must change the answer, or this test proves nothing"


def test_multi_head_attention_matches_minilm_multihead_attention():
    from minilm.attention import MultiHeadAttention

    torch.manual_seed(1)
    layer = MultiHeadAttention(d_model=16, n_heads=4, bias=False).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = layer(x)
    weights = [p.weight.detach() for p in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj)]
    torch.testing.assert_close(ex.multi_head_attention(x, *weights, 4), expected)


def test_multi_head_attention_rejects_uneven_heads():
    w = torch.randn(10, 10)
    with pytest.raises(ValueError):
        ex.multi_head_attention(torch.randn(1, 2, 10), w, w, w, w, 3)


@pytest.mark.parametrize("lengths, length", [([3, 1], 4), ([0, 5, 2], 5), ([7], 7)])
def test_padding_mask_marks_the_real_tokens(lengths, length):
    mask = ex.padding_mask(torch.tensor(lengths), length)
    assert mask.dtype == torch.bool and mask.shape == (len(lengths), length)
    brute_force = torch.tensor([[j < n for j in range(length)] for n in lengths])
    assert torch.equal(mask, brute_force)


def test_padding_mask_rejects_impossible_lengths():
    with pytest.raises(ValueError):
        ex.padding_mask(torch.tensor([5]), 4)
    with pytest.raises(ValueError):
        ex.padding_mask(torch.tensor([-1]), 4)
