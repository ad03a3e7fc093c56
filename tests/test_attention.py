"""minilm.attention against independent references: PyTorch's fused attention and nn.MultiheadAttention
(with copied weights), torch.softmax, brute-force masks, float64 gradient checks and symmetry."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from minilm.attention import (MultiHeadAttention, causal_mask, fused_attention, measure_attention,
                              padding_mask, scaled_dot_product_attention, softmax)

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def random_case(seed, dtype, leading=(2, 3), t_q=None, t_k=None, d_k=None, d_v=None):
    """Random q, k, v with random sizes, and a random boolean mask that leaves every query a key."""
    g = torch.Generator().manual_seed(seed)
    size = lambda low, high: int(torch.randint(low, high, (1,), generator=g))
    t_q, t_k = t_q or size(1, 9), t_k or size(1, 9)
    d_k, d_v = d_k or size(1, 17), d_v or size(1, 17)
    q = torch.randn(*leading, t_q, d_k, generator=g, dtype=dtype)
    k = torch.randn(*leading, t_k, d_k, generator=g, dtype=dtype)
    v = torch.randn(*leading, t_k, d_v, generator=g, dtype=dtype)
    mask = torch.rand(*leading, t_q, t_k, generator=g) < 0.6
    mask[..., 0] = True  # every query keeps at least its first key (empty rows are tested on their own)
    return q, k, v, mask


# softmax


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_equals_torch(dtype):
    x = torch.randn(4, 7, 11, dtype=dtype) * 5
    for dim in (0, 1, -1):
        torch.testing.assert_close(softmax(x, dim=dim), torch.softmax(x, dim=dim), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_finite_for_huge_inputs(dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4], [-1e4, 1e4 - 1.0, 1e4]],
                     dtype=dtype)
    result = softmax(x)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, torch.softmax(x, dim=-1), **TOLERANCE[dtype])
    naive = torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)  # what the shift protects against
    assert not torch.isfinite(naive).all()


def test_softmax_of_an_all_minus_infinity_row_is_zero():
    x = torch.tensor([[float("-inf")] * 3, [0.0, float("-inf"), 1.0]], requires_grad=True)
    result = softmax(x)
    assert torch.equal(result[0], torch.zeros(3))
    torch.testing.assert_close(result[1], torch.softmax(x[1].detach(), dim=-1))
    result.square().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_gradient_is_right_for_one_key_and_no_key_rows(dtype):
    # A row with one finite entry (the first query of every causal sequence) sums to exactly 1, and a
    # row with none sums to 0: both edges of the division. Compare with torch.softmax, row by row.
    inf = float("-inf")
    rows = torch.tensor([[0.3, inf, inf], [inf, -2.0, inf], [inf, inf, inf], [0.5, -1.0, 2.0]], dtype=dtype)
    upstream = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 4.0, 0.5], [2.0, -3.0, 1.0], [0.7, -0.2, 1.5]], dtype=dtype)
    ours = rows.clone().requires_grad_()
    (softmax(ours) * upstream).sum().backward()
    for index in (0, 1, 3):  # rows with at least one key: torch.softmax is the reference
        theirs = rows[index].clone().requires_grad_()
        (torch.softmax(theirs, dim=-1) * upstream[index]).sum().backward()
        finite = torch.isfinite(rows[index])
        torch.testing.assert_close(ours.grad[index][finite], theirs.grad[finite], **TOLERANCE[dtype])
    assert torch.equal(ours.grad[0], torch.zeros(3, dtype=dtype))  # one key: its weight is 1 whatever its score
    assert torch.equal(ours.grad[2], torch.zeros(3, dtype=dtype))  # no key: nothing to learn, and no NaN


def test_causal_attention_gradient_at_the_first_position_matches_torch():
    # The first query sees one key; its gradient must match PyTorch's fused kernel (a float64 reference).
    q, k, v, _ = random_case(11, torch.float64, leading=(2, 3), t_q=5, t_k=5)
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    theirs = [t.clone().requires_grad_() for t in (q, k, v)]
    upstream = torch.randn(2, 3, 5, v.shape[-1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (scaled_dot_product_attention(*ours, mask=causal_mask(5))[0] * upstream).sum().backward()
    (F.scaled_dot_product_attention(*theirs, is_causal=True) * upstream).sum().backward()
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine.grad, reference.grad, **TOLERANCE[torch.float64])


# masks


@pytest.mark.parametrize("t_q, t_k", [(1, 1), (5, 5), (1, 7), (3, 8), (6, 9)])
def test_causal_mask_matches_brute_force(t_q, t_k):
    expected = torch.zeros(t_q, t_k, dtype=torch.bool)
    for i, j in itertools.product(range(t_q), range(t_k)):
        position = t_k - t_q + i  # the queries are the last t_q positions
        expected[i, j] = j <= position
    assert torch.equal(causal_mask(t_q, t_k), expected)


def test_causal_mask_defaults_to_square_and_matches_torch_convention():
    # torch's is_causal (equal lengths) allows exactly the lower triangle
    assert torch.equal(causal_mask(6), torch.ones(6, 6).tril().bool())


def test_causal_mask_rejects_more_queries_than_keys():
    with pytest.raises(ValueError, match="t_q <= t_k"):
        causal_mask(5, 3)
    with pytest.raises(ValueError):
        causal_mask(0)


def test_padding_mask_matches_brute_force():
    lengths = torch.tensor([0, 3, 5, 1])
    mask = padding_mask(lengths, 5)
    assert mask.shape == (4, 1, 1, 5) and mask.dtype == torch.bool
    for b, length in enumerate(lengths.tolist()):
        assert mask[b, 0, 0].tolist() == [t < length for t in range(5)]


def test_padding_mask_rejects_bad_lengths():
    with pytest.raises(ValueError, match="integer"):
        padding_mask(torch.tensor([1.0, 2.0]), 4)
    with pytest.raises(ValueError, match="1-D"):
        padding_mask(torch.tensor([[1, 2]]), 4)
    with pytest.raises(ValueError, match="0..t_k=4"):
        padding_mask(torch.tensor([1, 5]), 4)


# scaled dot-product attention


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("masked", [False, True])
def test_attention_equals_torch(seed, dtype, masked):
    q, k, v, mask = random_case(seed, dtype)
    mask = mask if masked else None
    output, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(output, expected, **TOLERANCE[dtype])
    scores = (q.double() @ k.double().transpose(-2, -1)) / q.shape[-1] ** 0.5  # float64 reference weights
    if masked:
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(weights.double(), torch.softmax(scores, dim=-1), **TOLERANCE[torch.float32])


@pytest.mark.parametrize("leading", [(), (3,), (2, 1, 3)])
def test_attention_takes_any_leading_dimensions_and_broadcast_masks(leading):
    q, k, v, _ = random_case(7, torch.float64, leading=leading, t_q=5, t_k=5)
    mask = causal_mask(5)  # (t_q, t_k), broadcast over every leading dimension
    output, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert output.shape == (*leading, 5, v.shape[-1]) and weights.shape == (*leading, 5, 5)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(output, expected, **TOLERANCE[torch.float64])


def test_permuting_keys_with_values_leaves_the_output_unchanged():
    q, k, v, _ = random_case(3, torch.float64, t_k=8)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    output, weights = scaled_dot_product_attention(q, k, v)
    permuted, permuted_weights = scaled_dot_product_attention(q, k[..., order, :], v[..., order, :])
    torch.testing.assert_close(permuted, output, **TOLERANCE[torch.float64])
    torch.testing.assert_close(permuted_weights, weights[..., order], **TOLERANCE[torch.float64])


@pytest.mark.parametrize("path", ["formula", "fused"])
def test_fully_masked_rows_give_zeros_and_finite_gradients(path):
    q, k, v, mask = random_case(4, torch.float64, leading=(2, 2), t_q=4, t_k=5)
    mask[0, 1, 2] = False  # one query with no key at all
    mask[1, 0] = False  # a whole sequence with nothing to attend to
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    if path == "formula":
        output, weights = scaled_dot_product_attention(q, k, v, mask=mask)
        assert torch.equal(weights[0, 1, 2], torch.zeros(5, dtype=torch.float64))
    else:
        output = fused_attention(q, k, v, mask=mask)
    empty = ~mask.any(-1)  # (2, 2, 4)
    assert torch.equal(output[empty], torch.zeros_like(output[empty]))
    kept = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty[..., None])  # rows with keys
    torch.testing.assert_close(output[~empty], kept[~empty], **TOLERANCE[torch.float64])
    output.sum().backward()
    for tensor in (q, k, v):
        assert torch.isfinite(tensor.grad).all()
    assert torch.equal(q.grad[empty], torch.zeros_like(q.grad[empty]))  # an empty row learns nothing
    assert torch.equal(k.grad[1, 0], torch.zeros_like(k.grad[1, 0]))


@pytest.mark.parametrize("masked", [False, True])
def test_attention_gradients_pass_gradcheck(masked):
    q, k, v, mask = random_case(5, torch.float64, leading=(2,), t_q=3, t_k=4, d_k=3, d_v=2)
    mask[0, 1] = False  # include a fully masked row
    mask = mask if masked else None
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(lambda *a: scaled_dot_product_attention(*a, mask=mask), inputs)
    assert torch.autograd.gradcheck(lambda *a: fused_attention(*a, mask=mask), inputs)


def test_dropout_is_unbiased_and_leaves_the_returned_weights_alone():
    q, k, v, _ = random_case(6, torch.float64, leading=(1,), t_q=3, t_k=4)
    plain, plain_weights = scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    many = [t.expand(4000, -1, -1) for t in (q, k, v)]  # 4000 independent dropout draws
    dropped, weights = scaled_dot_product_attention(*many, dropout_p=0.3)
    torch.testing.assert_close(weights[:1], plain_weights)
    assert not torch.allclose(dropped[0], plain[0])
    torch.testing.assert_close(dropped.mean(0, keepdim=True), plain, atol=0.05, rtol=0)


def test_attention_rejects_bad_inputs():
    q, k, v, mask = random_case(8, torch.float32, t_q=3, t_k=4, d_k=5, d_v=6)
    with pytest.raises(ValueError, match="same size d_k"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="one value"):
        scaled_dot_product_attention(q, k, v[..., :3, :])
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask=mask.float())
    with pytest.raises(TypeError, match="boolean"):
        fused_attention(q, k, v, mask=mask.long())


# the fused path


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t_q, t_k", [(6, 6), (2, 7), (1, 5)])
def test_fused_attention_equals_the_formula(dtype, t_q, t_k):
    q, k, v, mask = random_case(t_q * 10 + t_k, dtype, t_q=t_q, t_k=t_k)
    for kwargs in (dict(), dict(mask=mask), dict(is_causal=True), dict(mask=mask, is_causal=True)):
        formula_mask = kwargs.get("mask")
        if kwargs.get("is_causal"):
            causal = causal_mask(t_q, t_k)
            formula_mask = causal if formula_mask is None else formula_mask & causal
        expected, _ = scaled_dot_product_attention(q, k, v, mask=formula_mask)
        torch.testing.assert_close(fused_attention(q, k, v, **kwargs), expected, **TOLERANCE[dtype])


def test_cached_queries_see_what_the_full_sequence_sees():
    """Attending with the last t_q queries against all t_k keys gives the last rows of full attention."""
    q, k, v, _ = random_case(9, torch.float64, t_q=7, t_k=7)
    full, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(7))
    last, _ = scaled_dot_product_attention(q[..., 4:, :], k, v, mask=causal_mask(3, 7))
    torch.testing.assert_close(last, full[..., 4:, :], **TOLERANCE[torch.float64])
    fused = fused_attention(q[..., 4:, :], k, v, is_causal=True)
    torch.testing.assert_close(fused, full[..., 4:, :], **TOLERANCE[torch.float64])


# multi-head attention


def torch_copy(layer: MultiHeadAttention, dtype) -> torch.nn.MultiheadAttention:
    """A torch.nn.MultiheadAttention holding the same weights as `layer`."""
    d_model = layer.q_proj.in_features
    bias = layer.q_proj.bias is not None
    reference = torch.nn.MultiheadAttention(d_model, layer.n_heads, bias=bias, batch_first=True, dtype=dtype)
    with torch.no_grad():
        projections = [layer.q_proj, layer.k_proj, layer.v_proj]
        reference.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        reference.out_proj.weight.copy_(layer.out_proj.weight)
        if bias:
            reference.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
            reference.out_proj.bias.copy_(layer.out_proj.bias)
    return reference.eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d_model, n_heads", [(8, 1), (12, 3), (16, 4)])
def test_self_attention_equals_torch_multihead(dtype, fast, bias, d_model, n_heads):
    torch.manual_seed(d_model + n_heads)
    layer = MultiHeadAttention(d_model, n_heads, bias=bias, fast=fast).to(dtype).eval()
    reference = torch_copy(layer, dtype)
    x = torch.randn(3, 6, d_model, dtype=dtype)
    lengths = torch.tensor([6, 4, 2])
    for mask, torch_masks in [
        (None, {}),
        (causal_mask(6), dict(attn_mask=~causal_mask(6))),  # torch's attn_mask: True = may NOT attend
        (padding_mask(lengths, 6), dict(key_padding_mask=~padding_mask(lengths, 6)[:, 0, 0])),
    ]:
        output, _ = layer(x, mask=mask)
        expected, _ = reference(x, x, x, need_weights=False, **torch_masks)
        torch.testing.assert_close(output, expected, **TOLERANCE[dtype])
        _, weights = layer(x, mask=mask, need_weights=True)
        _, expected_weights = reference(x, x, x, average_attn_weights=False, **torch_masks)
        torch.testing.assert_close(weights, expected_weights, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast", [False, True])
def test_cross_attention_equals_torch_multihead(dtype, fast):
    torch.manual_seed(1)
    layer = MultiHeadAttention(16, 4, fast=fast).to(dtype).eval()
    reference = torch_copy(layer, dtype)
    x = torch.randn(2, 3, 16, dtype=dtype)  # 3 queries
    context = torch.randn(2, 7, 16, dtype=dtype)  # attend over 7 other positions
    lengths = torch.tensor([7, 5])
    output, _ = layer(x, context=context, mask=padding_mask(lengths, 7))
    expected, _ = reference(x, context, context, key_padding_mask=~padding_mask(lengths, 7)[:, 0, 0])
    assert output.shape == (2, 3, 16)
    torch.testing.assert_close(output, expected, **TOLERANCE[dtype])


def test_fast_and_formula_paths_agree_with_combined_masks():
    torch.manual_seed(2)
    layer = MultiHeadAttention(16, 2).double().eval()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    mask = causal_mask(5) & padding_mask(torch.tensor([5, 3, 0]), 5)  # (3, 1, 5, 5), one empty sequence
    formula, _ = layer(x, mask=mask)
    layer.fast = True
    fast, _ = layer(x, mask=mask)
    torch.testing.assert_close(fast, formula, **TOLERANCE[torch.float64])
    assert torch.isfinite(fast).all()
    _, weights = layer(x, mask=mask, need_weights=True)  # asking for weights takes the formula path
    assert weights.shape == (3, 2, 5, 5)


def test_multihead_gradients_pass_gradcheck():
    torch.manual_seed(3)
    layer = MultiHeadAttention(6, 2).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t, mask=causal_mask(4))[0], (x,))


def test_dropout_acts_only_while_training():
    torch.manual_seed(4)
    layer = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    layer.eval()
    first, second = layer(x)[0], layer(x)[0]
    assert torch.equal(first, second)
    layer.train()
    assert not torch.allclose(layer(x)[0], first)


def test_multihead_rejects_heads_that_do_not_divide_d_model():
    with pytest.raises(ValueError, match="split evenly"):
        MultiHeadAttention(10, 3)


# cost


def test_measured_memory_shows_the_formula_storing_the_weights():
    length, batch, heads = 128, 2, 3
    _, weights = scaled_dot_product_attention(*torch.randn(3, batch, heads, length, 8).unbind(0))
    weight_bytes = weights.numel() * weights.element_size()  # one (batch, heads, t, t) tensor
    formula = measure_attention("formula", length, batch=batch, heads=heads, head_dim=8, repeats=1)
    fused = measure_attention("torch", length, batch=batch, heads=heads, head_dim=8, repeats=1)
    output_bytes = batch * heads * length * 8 * 4
    assert formula.peak_bytes >= weight_bytes + output_bytes
    assert output_bytes <= fused.peak_bytes < weight_bytes  # the fused kernel never holds the weights
    assert formula.seconds > 0 and formula.path == "formula" and formula.length == length


def test_measure_attention_rejects_unknown_paths():
    with pytest.raises(ValueError, match="formula, fused"):
        measure_attention("flash", 16)
