"""Scoring the applications: BLEU equal to sacrebleu's, exact match by SQuAD's rules, answers
generated in batches equal to answers generated one by one, and decoding compared fairly."""
import pytest
import sacrebleu
import torch

from minilm.data import END_OF_TEXT, StoryWorld
from minilm.evaluate import distinct_n
from minilm.model import GPT, GPTConfig
from minilm.apps.task_eval import (DECODINGS, Decoding, accuracy, compare_decoding, evaluate_task, exact_match,
                              first_line, generate_answers, normalize_answer, score, unsupported_rate,
                              until_stop, wilson_interval)
from minilm.apps.tasks import story_examples
from minilm.tokenizer import BPETokenizer

STORIES = StoryWorld().stories(10, seed=64)
TOKENIZER = BPETokenizer.train([s.text for s in STORIES], 400)
END = TOKENIZER.special_tokens[END_OF_TEXT]


def tiny_model(context: int = 256) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, context_length=context, n_layer=1, n_head=2, n_embd=32))


@pytest.mark.parametrize("prediction, reference, same", [
    ("The red kite.", "red kite", True), ("in a snowy valley", "In the snowy valley!", True),
    ("  Mia ", "mia", True), ("an apple", "apple", True), ("Mia", "Leo", False), ("theater", "ater", False),
    ("red, kite", "red kite", True), ("", "", True), ("a", "", True)])
def test_normalize_answer_follows_squad(prediction, reference, same):
    assert (normalize_answer(prediction) == normalize_answer(reference)) is same
    assert exact_match([prediction], [reference]) == float(same)


def test_exact_match_and_accuracy_are_shares():
    assert exact_match(["Mia", "Leo", "the cat"], ["mia", "Tom", "cat"]) == pytest.approx(2 / 3)
    assert accuracy(["happy", "sad", "sad", "happy"], ["happy", "happy", "sad", "sad"]) == 0.5
    with pytest.raises(ValueError, match="one reference per prediction"):
        exact_match(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        accuracy([], [])


def test_translation_score_is_sacrebleu_corpus_bleu():
    examples = story_examples("translation", STORIES[:3])
    references = [e.answer.strip() for e in examples]
    hypotheses = [" ".join(r.split()[:-2] + ["zuzu"]) for r in references]
    expected = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", smooth_method="none").score
    assert score("translation", hypotheses, references) == pytest.approx(expected, abs=1e-9)
    assert score("translation", references, references) == pytest.approx(100.0)


@pytest.mark.parametrize("successes, n", [(0, 19), (5, 19), (18, 19), (19, 19), (1, 1), (137, 150), (250, 500)])
def test_wilson_interval_is_every_share_the_score_test_accepts(successes, n):
    """Brute force: scan p over a fine grid and keep those with |share − p| ≤ 1.96·√(p(1 − p)/n)."""
    grid = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    accepted = grid[(successes / n - grid).abs() <= 1.96 * torch.sqrt(grid * (1 - grid) / n)]
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(accepted.min().item(), abs=1e-5)
    assert high == pytest.approx(accepted.max().item(), abs=1e-5)
    assert 0 <= low <= successes / n <= high <= 1
    with pytest.raises(ValueError):
        wilson_interval(n + 1, n)


def test_unsupported_rate_counts_answers_with_words_not_in_the_source():
    story = "Mia found a red kite near the river."
    assert unsupported_rate(["red kite", "Mia", "a blue kite", "Leo"], [story] * 4) == 0.5
    assert unsupported_rate(["The red kite."], [story]) == 0.0  # articles and punctuation do not count


def test_summary_and_mood_scores():
    assert score("summary", ["Mia lost the kite"], ["Mia lost the red kite"]) == pytest.approx(2 * 4 / 9)
    assert score("mood", ["Happy.", "sad", "glad"], ["happy", "sad", "happy"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no metric"):
        score("poetry", ["a"], ["a"])


def test_until_stop_and_first_line():
    assert until_stop([5, 6, END, 7], [END]) == [5, 6] and until_stop([5, 6], [END]) == [5, 6]
    assert first_line("  Leo\nQuestion: who?") == "Leo"


def test_batched_answers_equal_answers_one_by_one():
    model = tiny_model()
    prompts = [e.prompt for e in story_examples("qa", STORIES[:2])]
    batched = generate_answers(model, TOKENIZER, prompts, max_new_tokens=6, batch_size=3)
    for prompt, answer in zip(prompts, batched):
        ids = torch.tensor([TOKENIZER.encode(prompt)])
        out = model.generate(ids, 6, temperature=0, stop_tokens=[END])
        assert answer == TOKENIZER.decode(until_stop(out[0, ids.shape[1]:].tolist(), [END]))


def test_evaluate_task_scores_what_fits_and_refuses_what_cannot():
    model = tiny_model()
    examples = story_examples("qa", STORIES[:2])
    result = evaluate_task(model, TOKENIZER, examples, max_new_tokens=4)
    assert result.metric == "exact match" and len(result.predictions) == len(examples)
    assert result.score == exact_match(result.predictions, [e.answer.strip() for e in examples])
    with pytest.raises(ValueError, match="no prompt .* fits the model's context of 16"):
        evaluate_task(tiny_model(context=16), TOKENIZER, examples)
    with pytest.raises(ValueError, match="one task at a time"):
        evaluate_task(model, TOKENIZER, examples + story_examples("mood", STORIES[:1]))


def test_compare_decoding_measures_each_strategy_on_the_same_prompts():
    model = tiny_model()
    prompts = ["Long ago, a shy fox", "One morning, Mia"]
    rows = compare_decoding(model, TOKENIZER, prompts, max_new_tokens=12, samples=3)
    assert [row["decoding"] for row in rows] == [d.name for d in DECODINGS]
    again = compare_decoding(model, TOKENIZER, prompts, max_new_tokens=12, samples=3)
    assert rows == again  # seeded: the same numbers every time
    greedy = compare_decoding(model, TOKENIZER, prompts[:1], 12, [Decoding("greedy", 0.0)], samples=3)[0]
    ids = model.generate(torch.tensor([TOKENIZER.encode(prompts[0])]), 12, temperature=0, stop_tokens=[END])
    one = until_stop(ids[0, len(TOKENIZER.encode(prompts[0])):].tolist(), [END])
    assert greedy["distinct-2"] == pytest.approx(distinct_n([one] * 3, 2))  # three identical samples
