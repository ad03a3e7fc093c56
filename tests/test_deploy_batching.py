"""The batching engine against chapter 3's `generate` (each request alone, float64 so batch rounding
cannot matter) and its ragged KV cache's mask and positions against brute force."""
import time

import pytest
import torch

from minilm.deploy.batching import BatchingConfig, BatchingEngine, Job, SlotCache
from minilm.model import GPT, GPTConfig
from minilm.positions import LearnedPositions, RotaryEmbedding

STOP = 5


def tiny(family: str) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, context_length=48, n_layer=2, n_head=2, n_embd=32, family=family)).double()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_more_jobs_than_slots_each_write_what_generate_writes(family):
    model = tiny(family)
    engine = BatchingEngine(model, BatchingConfig(max_batch=3))
    torch.manual_seed(1)
    requests, expected = [], []
    for i in range(7):  # prompts of 3..9 tokens: every step mixes rows of different lengths
        prompt = torch.randint(0, 300, (3 + i,)).tolist()
        sampling = {"temperature": 0.0} if i % 2 == 0 else {"temperature": 1.0, "seed": i, "top_k": 20}
        requests.append((prompt, sampling))
        out = model.generate(torch.tensor([prompt]), 10 + i, stop_tokens=[STOP], **sampling)[0, len(prompt):].tolist()
        expected.append(out[:out.index(STOP)] if STOP in out else out)
    jobs = [engine.submit(Job(prompt, 10 + i, stop_ids=[STOP], **sampling))
            for i, (prompt, sampling) in enumerate(requests)]
    written = [list(engine.tokens(job)) for job in jobs]
    engine.close()
    assert written == expected
    assert [job.finish_reason for job in jobs] == ["stop" if len(e) < 10 + i else "length"
                                                   for i, e in enumerate(expected)]
    assert 2 <= engine.largest_batch <= 3  # jobs shared steps, never more than the slots


def test_slot_cache_mask_lets_each_row_see_its_own_tokens_only():
    cache = SlotCache(tiny("gpt2"), slots=3)
    cache.lengths[:] = torch.tensor([4, 0, 2])
    cache.use([0, 2])
    mask = cache.attention_mask(t_q=1)[:, 0]  # (batch, 1, t_k)
    for row, length in enumerate([4, 2]):
        for key in range(mask.shape[-1]):
            assert mask[row, 0, key] == (key <= length)  # its stored tokens and the new one
    cache.use([0])
    assert cache.attention_mask(t_q=3) is None  # one row: the causal mask is enough


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_right_padded_prefill_gives_each_prompt_its_solo_logits(family):
    model = tiny(family)
    torch.manual_seed(2)
    prompts = [torch.randint(0, 300, (n,)).tolist() for n in (5, 2, 8)]
    cache = SlotCache(model, slots=4)
    cache.use([3, 0, 1], adds=[len(p) for p in prompts])
    padded = torch.tensor([p + [0] * (8 - len(p)) for p in prompts])  # (3, 8)
    with torch.no_grad():
        logits, _ = model(padded, cache=cache)  # (3, 8, vocab)
        assert cache.lengths.tolist() == [2, 8, 0, 5]  # each slot keeps its prompt's length, not the padding's
        nexts = [[7], [11], [13]]
        cache.use([3, 0, 1])
        step, _ = model(torch.tensor(nexts), cache=cache)  # (3, 1, vocab): one token after each prompt
        for row, prompt in enumerate(prompts):
            alone, _ = model(torch.tensor([prompt + nexts[row]]))  # (1, len + 1, vocab), no cache
            assert torch.allclose(logits[row, len(prompt) - 1], alone[0, -2], atol=1e-12)
            assert torch.allclose(step[row, 0], alone[0, -1], atol=1e-12)


class RecordingModel(GPT):
    """Records the shape of every batch the engine runs, and takes a little time over each."""

    def forward(self, tokens, *args, **kwargs):
        self.shapes.append(tuple(tokens.shape))
        time.sleep(0.02)
        return super().forward(tokens, *args, **kwargs)


def test_requests_waiting_together_are_prefilled_in_one_pass():
    model = RecordingModel(tiny("gpt2").config).double()
    model.load_state_dict(tiny("gpt2").state_dict())
    model.shapes = []
    engine = BatchingEngine(model, BatchingConfig(max_batch=8))
    torch.manual_seed(3)
    prompts = [torch.randint(0, 300, (n,)).tolist() for n in (4, 6, 3, 9, 5)]
    first = engine.submit(Job(prompts[0], 12, temperature=0.0))
    time.sleep(0.01)  # the engine is now busy with the first request; the rest queue up meanwhile
    jobs = [first] + [engine.submit(Job(p, 8, temperature=1.0, seed=i, top_p=0.9)) for i, p in enumerate(prompts[1:])]
    written = [list(engine.tokens(job)) for job in jobs]
    engine.close()
    expected = [model.generate(torch.tensor([prompts[0]]), 12, temperature=0.0)[0, 4:].tolist()]
    expected += [model.generate(torch.tensor([p]), 8, temperature=1.0, seed=i, top_p=0.9)[0, len(p):].tolist()
                 for i, p in enumerate(prompts[1:])]
    assert written == expected
    assert (4, 9) in model.shapes  # the four waiting prompts read in one pass, padded to the longest


def test_positions_with_one_start_per_row_equal_each_row_alone():
    starts = torch.tensor([0, 3, 7])
    learned, rope = LearnedPositions(16, 8), RotaryEmbedding(8, 16)
    rows = learned(4, starts)  # (3, 4, 8)
    cos, sin = rope(4, starts)  # (3, 1, 4, 8)
    for b, start in enumerate(starts.tolist()):
        assert torch.equal(rows[b], learned(4, start))
        assert torch.equal(cos[b, 0], rope(4, start)[0]) and torch.equal(sin[b, 0], rope(4, start)[1])
    with pytest.raises(ValueError, match="do not fit"):
        learned(10, starts)


@pytest.mark.parametrize("config", [BatchingConfig(max_batch=0), BatchingConfig(max_waiting=0),
                                    BatchingConfig(max_seconds=0)])
def test_bad_settings_are_one_line(config):
    with pytest.raises(ValueError, match="at least 1"):
        BatchingEngine(tiny("gpt2"), config)
