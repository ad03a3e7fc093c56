"""minilm.interpret.heads: induction and previous-token scores against brute-force loops and a
model whose head copies by construction; head ablation effects against zeroed weights."""
import copy

import pytest
import torch

from minilm.interpret import (copy_scores, format_effects, head_ablation_effects, induction_scores, previous_token_scores,
                              record_internals, repeated_sequence_losses, repeated_tokens)
from minilm.model import GPT, GPTConfig

T, V = 10, 30  # the planted model's period and vocabulary


def planted_copying_model() -> GPT:
    """One block whose head 0 attends from position i to i - T + 1 and copies that token's identity
    to the output; head 1 attends uniformly and writes nothing; the MLP writes nothing.

    The stream holds a one-hot of the position (dims 0..23) plus a one-hot of the token (dims 24..53).
    Head 0's key reads position j, its query at position i asks for position i - T + 1, its value is
    the token, and attention.out puts that token back, strongly, where the tied head reads tokens.
    """
    model = GPT(GPTConfig(vocab_size=V, context_length=24, n_layer=1, n_head=2, n_embd=64))
    block, n = model.blocks[0], 64
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (block.attention_norm, block.mlp_norm, model.final_norm):
            norm.weight.fill_(1.0)
        model.positions.table.weight[:, :24] = torch.eye(24)
        model.token_embedding.weight[:, 24:24 + V] = torch.eye(V)
        qkv = block.attention.qkv.weight  # rows: q (heads 0, 1), k (heads 0, 1), v (heads 0, 1)
        for position in range(24):
            qkv[n + position, position] = 1.0  # head 0's key: which position this is
            if position >= T - 1:
                qkv[position - (T - 1), position] = 6.0  # head 0's query: the position T - 1 back
        for token in range(V):
            qkv[2 * n + token, 24 + token] = 1.0  # head 0's value: which token this is
            block.attention.out.weight[24 + token, token] = 20.0  # written back where tokens are read
    return model.eval()


def random_model(family: str = "gpt2", seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=40, context_length=32, n_layer=2, n_head=4, n_embd=32, family=family,
                          n_kv_head=2 if family == "llama" else None))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.15)
    return model.eval()


def test_repeated_tokens_repeat_after_an_optional_first_token():
    idx = repeated_tokens(V, T, batch=3, seed=2, bos=V - 1)
    assert idx.shape == (3, 1 + 2 * T) and (idx[:, 0] == V - 1).all()
    assert torch.equal(idx[:, 1:1 + T], idx[:, 1 + T:]) and int(idx.max()) < V
    assert not torch.equal(idx[0], idx[1])
    assert torch.equal(repeated_tokens(V, T, 3, seed=2)[:, :T], idx[:, 1:1 + T])  # the same draw, seeded
    with pytest.raises(ValueError, match="length >= 2"):
        repeated_tokens(V, 1, 3)


@pytest.mark.parametrize("bos", [None, V - 1])
def test_the_planted_head_scores_one_and_the_uniform_head_chance(bos):
    model = planted_copying_model()
    scores = induction_scores(model, V, length=T, batch=6, bos=bos)
    assert scores.shape == (1, 2)
    assert scores[0, 0] > 0.99
    start = 0 if bos is None else 1
    chance = sum(1 / (i + 1) for i in range(start + T, start + 2 * T)) / T  # uniform over keys 0..i
    assert scores[0, 1].item() == pytest.approx(chance, abs=1e-6)
    previous = previous_token_scores(model, repeated_tokens(V, T, 6, bos=bos))
    assert previous[0, 0] < 0.2  # head 0 looks T - 1 back, not 1 (before position T - 1 it spreads)


def test_the_planted_head_makes_the_second_copy_cheap():
    model = planted_copying_model()
    losses = repeated_sequence_losses(model, V, length=T, batch=8)
    assert losses.first > 2.0  # about ln 30 = 3.4: nothing to go on
    assert losses.second < 0.05  # copied
    assert losses.by_position.shape == (2 * T - 1,)
    with pytest.raises(ValueError, match="context"):
        repeated_sequence_losses(model, V, length=13)


@pytest.mark.parametrize("bos", [None, 39])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_scores_equal_brute_force_loops_over_recorded_weights(family, bos):
    model, length, batch = random_model(family), 6, 3
    scores = induction_scores(model, 40, length=length, batch=batch, seed=4, bos=bos)
    idx = repeated_tokens(40, length, batch, seed=4, bos=bos)
    with torch.no_grad(), record_internals(model) as seen:
        model(idx)
    start = 0 if bos is None else 1
    time = idx.shape[1]
    for layer in range(2):
        for head in range(4):
            weights = seen.attention[layer][:, head]  # (batch, time, time)
            induction = [weights[b, i, i - length + 1].item()
                         for b in range(batch) for i in range(start + length, time)]
            previous = [weights[b, i, i - 1].item() for b in range(batch) for i in range(1, time)]
            assert scores[layer, head].item() == pytest.approx(sum(induction) / len(induction), abs=1e-6)
            assert previous_token_scores(model, idx)[layer, head].item() == pytest.approx(
                sum(previous) / len(previous), abs=1e-6)


def test_repeated_sequence_losses_equal_the_models_own_loss_on_each_copy():
    model, length = random_model(), 7
    idx = repeated_tokens(40, length, 4, seed=3, bos=39)
    losses = repeated_sequence_losses(model, 40, length=length, batch=4, seed=3, bos=39)
    for name, first_token in (("first", 1), ("second", 1 + length)):
        targets = torch.full_like(idx[:, 1:], -100)
        for position in range(first_token + 1, first_token + length):  # tokens 1..length-1 of the copy
            targets[:, position - 1] = idx[:, position]  # predicted from the logits one position earlier
        _, loss = model(idx[:, :-1], targets)
        assert getattr(losses, name) == pytest.approx(loss.item(), abs=1e-5)


def test_ablation_effects_equal_zeroed_out_weights():
    model = random_model("llama")
    generator = torch.Generator().manual_seed(7)
    idx = torch.randint(40, (3, 12), generator=generator)
    targets = torch.randint(40, (3, 12), generator=generator)
    targets[1, :5] = -100
    names = ["name", "object", "other"]
    kinds = [[names[(b + t * t) % 3] for t in range(12)] for b in range(3)]
    rows = head_ablation_effects(model, idx, targets, kinds)
    assert len(rows) == 2 * 4 * 4  # every head, "all" and three kinds
    layer, head, d = 1, 2, model.config.head_dim
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        zeroed.blocks[layer].attention.out.weight[:, head * d:(head + 1) * d] = 0.0
    for kind in ["all"] + names:
        chosen = torch.tensor([[kind in ("all", k) for k in row] for row in kinds])
        only = torch.where(chosen, targets, -100)
        row = next(r for r in rows if (r["layer"], r["head"], r["kind"]) == (layer, head, kind))
        base, ablated = model(idx, only)[1].item(), zeroed(idx, only)[1].item()
        assert row["tokens"] == int((only != -100).sum())
        assert row["loss"] == pytest.approx(base, abs=1e-5)
        assert row["ablated_loss"] == pytest.approx(ablated, abs=1e-5)
        assert row["change"] == pytest.approx(ablated - base, abs=1e-5)
    with pytest.raises(ValueError, match="one kind per target"):
        head_ablation_effects(model, idx, targets, kinds[:2])


def test_ablation_effects_find_the_planted_copying_head():
    model = planted_copying_model()
    idx = repeated_tokens(V, T, 4, seed=1)
    inputs, targets = idx[:, :-1], idx[:, 1:]
    kinds = [["first"] * (T - 1) + ["second"] * T for _ in range(4)]  # target t is token t + 1
    rows = head_ablation_effects(model, inputs, targets, kinds)
    change = {(r["head"], r["kind"]): r["change"] for r in rows}
    assert change[0, "second"] > 2.0  # without its copying head the second copy is a guess again
    assert abs(change[0, "first"]) < change[0, "second"] / 4
    assert change[1, "second"] == 0.0 and change[1, "all"] == 0.0  # head 1 writes nothing
    table = format_effects(rows).splitlines()
    assert len(table) == 2 + 2 and table[0].split() == ["head", "all", "first", "second"]
    assert table[1].split() == ["tokens", str(4 * (2 * T - 1)), str(4 * (T - 1)), str(4 * T)]


def test_copy_scores_equal_a_brute_force_sum_over_earlier_copies_of_the_target():
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=12, context_length=20, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(12, (3, 20))
    targets = torch.randint(12, (3, 20))
    where = torch.rand(3, 20) < 0.5
    scores = copy_scores(model, idx, targets, where)
    with record_internals(model) as seen:
        model(idx)
    for layer, weights in enumerate(seen.attention):
        for head in range(2):
            values = [sum(weights[b, head, t, s].item() for s in range(t + 1) if idx[b, s] == targets[b, t])
                      for b in range(3) for t in range(20) if where[b, t]]
            assert scores[layer, head].item() == pytest.approx(sum(values) / len(values), abs=1e-6)


def test_copy_scores_find_the_planted_copying_head():
    model = planted_copying_model()
    idx = repeated_tokens(V, T, batch=4, seed=1)  # (4, 2T)
    targets = torch.cat([idx[:, 1:], idx[:, :1]], dim=1)  # the next token (the last wraps around)
    where = torch.zeros_like(idx, dtype=torch.bool)
    where[:, T:2 * T - 1] = True  # in the second copy every target appeared T - 1 positions back
    scores = copy_scores(model, idx, targets, where)
    assert scores[0, 0] > 0.99 and scores[0, 1] < 0.2
