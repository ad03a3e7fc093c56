"""The batching engine against chapter 3's `generate` (each request alone, float64 so batch rounding
cannot matter) and its ragged KV cache's mask and positions against brute force."""
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
