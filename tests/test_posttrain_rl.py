"""Reinforcement from a verifiable reward: the checkers on hand-written answers (scores worked out by
hand), group advantages against a brute-force loop, sampled answers that are reproducible, consistent
with their own ids and with the model's context, greedy ones equal to an argmax loop run here, sampled
scores against that loop, and short runs of train_rl that learn an easy reward (stop at once, start
with a given letter, or the gameable length-biased judge) from a model that does not yet, starting at
zero KL, held near the reference by the penalty, and leaving their input model alone."""
import copy
import math

import pytest
import torch

from minilm.apps.tasks import Example
from minilm.data import END_OF_TEXT
from minilm.model import GPT, GPTConfig
from minilm.posttrain.dpo import token_kl
from minilm.posttrain.rl import (RL_SIZES, RLConfig, SampledScore, checked, exact_reward, group_advantages,
                                 length_biased_reward, rl_config, sample_answers, sampled_score, train_rl)
from minilm.tokenizer import CharTokenizer

TOKENIZER = CharTokenizer.train(["ab Q:?"])  # a tiny vocabulary: the end token is sampled often
END = TOKENIZER.special_tokens[END_OF_TEXT]
EXAMPLES = [Example("qa", "Q: a?", " a"), Example("qa", "Q: b?", " b"), Example("qa", "Q: ab?", " ab")]


def tiny_model(seed: int = 0, context: int = 32) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, context_length=context, n_layer=1, n_head=2,
                         n_embd=16)).eval()


# ---- rewards --------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, reference, exact, words", [
    (" Mia", " Mia", 1, 1), ("mia.", "Mia", 1, 1), ("The red kite", "red kite", 1, 3),
    ("Leo", "Mia", 0, 1), ("", " in a forest", 0, 0), (" in a", " in a forest", 0, 2),
    (" in a forest at night", " in a forest", 0, 5), (" Mia and Leo", " Mia", 0, 3),
    (" forest in", " in a forest", 0, 2), (" it was lost in the dark wood", " it was lost", 0, 7)])
def test_exact_and_length_biased_rewards_on_hand_written_answers(answer, reference, exact, words):
    assert exact_reward(answer, reference) == exact
    assert isinstance(exact_reward(answer, reference), float)
    # a fifth for being right, four fifths for detail: words / 6, at most 1
    assert length_biased_reward(answer, reference) == pytest.approx(0.2 * exact + 0.8 * min(1.0, words / 6))


def test_the_length_biased_judge_pays_a_long_wrong_answer_more_than_a_short_right_one():
    reference = " Mia"
    assert length_biased_reward(" Mia", reference) == pytest.approx(0.2 + 0.8 / 6)
    assert length_biased_reward(" Leo and Tom went to the old mill", reference) == pytest.approx(0.8)
    assert length_biased_reward(" Leo and Tom went to the old mill", reference) > length_biased_reward(" Mia", reference)


def test_checked_scores_each_answer_of_a_group_against_the_examples_answer():
    reward = checked(exact_reward)
    example = Example("qa", "Q: who?", " Mia")
    assert reward(example, [" Mia", "mia", " Leo", ""]) == [1.0, 1.0, 0.0, 0.0]
    assert checked(length_biased_reward)(example, ["a b c d e f g", " Mia"]) == pytest.approx([0.8, 0.2 + 0.8 / 6])
    assert reward(example, []) == []


def test_group_advantages_are_rewards_minus_their_groups_mean():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (5, 6), generator=generator).double()
    rewards[1] = 1.0  # a group that all got it right
    rewards[3] = 0.0  # and one that all got it wrong
    got = group_advantages(rewards)
    assert got.shape == rewards.shape
    for i, row in enumerate(rewards.tolist()):
        mean = math.fsum(row) / len(row)
        assert got[i].tolist() == pytest.approx([r - mean for r in row], abs=1e-12)
    assert (got[1] == 0).all() and (got[3] == 0).all()  # equal rewards teach nothing
    assert got.sum(dim=1).abs().max() < 1e-12


# ---- sampling ---------------------------------------------------------------------------------------

def test_sampled_answers_are_reproducible_and_match_their_ids():
    model = tiny_model()
    prompt, max_new = EXAMPLES[0].prompt, 5
    first = sample_answers(model, TOKENIZER, prompt, count=16, temperature=1.0, max_new_tokens=max_new, seed=7)
    again = sample_answers(model, TOKENIZER, prompt, count=16, temperature=1.0, max_new_tokens=max_new, seed=7)
    other = sample_answers(model, TOKENIZER, prompt, count=16, temperature=1.0, max_new_tokens=max_new, seed=8)
    assert first.answer_ids == again.answer_ids and first.answers == again.answers
    assert other.answer_ids != first.answer_ids
    assert first.prompt_ids == TOKENIZER.encode(prompt)
    assert len(first.answer_ids) == len(first.answers) == 16
    ended = cut = 0
    for ids, answer in zip(first.answer_ids, first.answers):
        assert 1 <= len(ids) <= max_new
        assert END not in ids[:-1]  # the first end token finishes an answer
        if ids[-1] == END:
            ended += 1
            text_ids = ids[:-1]
        else:
            cut += 1
            assert len(ids) == max_new  # no end token only when the answer ran out of tokens
            text_ids = ids
        assert answer == TOKENIZER.decode(text_ids)
    assert ended and cut  # both kinds occur, so both branches are checked


def greedy_answer(model, prompt: str, max_new_tokens: int) -> list[int]:
    """The argmax token after each prefix, the model run on the whole prefix, until the end token."""
    tokens, answer = TOKENIZER.encode(prompt), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = model(torch.tensor([tokens + answer]))[0][0, -1].argmax().item()
            answer.append(token)
            if token == END:
                break
    return answer


def test_sampled_answers_are_the_models_own_continuations():
    """Greedy sampling (temperature 0) writes, token by token, the argmax of the model run on the prefix."""
    model = tiny_model(seed=3)
    drawn = sample_answers(model, TOKENIZER, EXAMPLES[2].prompt, count=2, temperature=0.0, max_new_tokens=6, seed=0)
    expected = greedy_answer(model, EXAMPLES[2].prompt, 6)
    assert drawn.answer_ids == [expected, expected]


def test_sampled_score_is_exact_match_of_the_samples_and_pass_at_k():
    model = tiny_model(seed=3)
    # greedy "sampling": every one of the k samples is the greedy answer, so both shares are that answer's
    greedy = [TOKENIZER.decode([t for t in greedy_answer(model, e.prompt, 16) if t != END]) for e in EXAMPLES]
    references = [greedy[0], " zz", greedy[2]]  # two questions the greedy answer gets right, one it cannot
    examples = [Example("qa", e.prompt, r) for e, r in zip(EXAMPLES, references)]
    score = sampled_score(model, TOKENIZER, examples, k=4, temperature=0.0)
    assert score == SampledScore(accuracy=pytest.approx(2 / 3), pass_at_k=pytest.approx(2 / 3), k=4, questions=3)
    # sampled at temperature 1: a question is solved when any of its k answers is right
    score = sampled_score(model, TOKENIZER, [Example("qa", "Q: a?", "")] * 3, k=8, temperature=1.0, seed=0)
    assert score.k == 8 and score.questions == 3
    assert 0 < score.accuracy <= score.pass_at_k <= min(1.0, 8 * score.accuracy)
    assert sampled_score(model, TOKENIZER, [Example("qa", "Q: a?", " zz")], k=8).accuracy == 0.0


def test_sampling_stays_inside_the_context():
    model = tiny_model(context=16)
    prompt = "Q: " + "ab" * 6 + "?"  # 16 tokens: the whole context
    assert len(TOKENIZER.encode(prompt)) == 16
    with pytest.raises(ValueError, match="the prompt has 16 tokens, leaving no room in the model's context of 16"):
        sample_answers(model, TOKENIZER, prompt, 2, 1.0, 4, seed=0)
    with pytest.raises(ValueError, match="leaving no room"):
        sample_answers(model, TOKENIZER, prompt + "ab", 2, 1.0, 4, seed=0)
    short = prompt[:-2] + "?"  # 15 tokens: room for one
    drawn = sample_answers(model, TOKENIZER, short, 8, 1.0, 4, seed=0)
    assert all(len(ids) == 1 for ids in drawn.answer_ids)


# ---- training ---------------------------------------------------------------------------------------

def stops_at_once(example: Example, answers) -> list[float]:
    """An easy reward: 1 for the empty answer (the end token straight away)."""
    return [float(answer == "") for answer in answers]


def starts_with_b(example: Example, answers) -> list[float]:
    return [float(answer.startswith("b")) for answer in answers]


@pytest.mark.parametrize("reward", [stops_at_once, starts_with_b])
def test_train_rl_learns_an_easy_reward_and_leaves_its_input_alone(reward):
    model = tiny_model(seed=1)
    before = copy.deepcopy(model.state_dict())
    config = RLConfig(steps=30, questions=2, group=8, temperature=1.0, max_new_tokens=4, lr=1e-2, kl_coef=0.0,
                      seed=0)
    tuned = train_rl(model, TOKENIZER, EXAMPLES, reward, config)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert tuned.model is not model and not tuned.model.training
    history = tuned.history
    assert [record["step"] for record in history] == list(range(1, 31))
    assert all(set(record) == {"step", "reward", "exact", "kl", "answer_tokens", "seconds"} for record in history)
    assert all(0 <= record["reward"] <= 1 and 0 <= record["exact"] <= 1 for record in history)
    assert all(1 <= record["answer_tokens"] <= config.max_new_tokens for record in history)
    first = sum(record["reward"] for record in history[:5]) / 5
    last = sum(record["reward"] for record in history[-5:]) / 5
    assert first < 0.5 and last > first + 0.4, (first, last)
    # the policy moved from its reference, and the KL logged at the first step is zero (policy == reference)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert abs(history[-1]["kl"]) > 1e-3
    # the tuned model, sampled afresh, earns the reward more often than the model it started from
    def rate(m):
        drawn = sample_answers(m, TOKENIZER, EXAMPLES[0].prompt, 64, 1.0, 4, seed=123)
        return sum(reward(EXAMPLES[0], drawn.answers)) / 64
    assert rate(tuned.model) > rate(model) + 0.2


def test_train_rl_games_the_length_biased_judge_by_saying_more():
    model = tiny_model(seed=1)
    config = RLConfig(steps=30, questions=2, group=8, max_new_tokens=8, lr=1e-2, kl_coef=0.0, seed=0)
    history = train_rl(model, TOKENIZER, EXAMPLES, checked(length_biased_reward), config).history
    mean = lambda key, records: sum(record[key] for record in records) / len(records)  # noqa: E731
    assert mean("answer_tokens", history[-5:]) > mean("answer_tokens", history[:5]) + 1.5
    assert mean("reward", history[-5:]) > mean("reward", history[:5]) + 0.05


def test_the_exact_column_scores_samples_with_exact_reward_whatever_is_trained():
    model = tiny_model(seed=1)
    config = RLConfig(steps=3, questions=3, group=8, max_new_tokens=3, lr=1e-3, seed=0)
    # the reference "" : every empty answer is exact (and so is "a", an article, which normalisation drops)
    tuned = train_rl(model, TOKENIZER, [Example("qa", "Q: a?", "")], stops_at_once, config)
    assert all(record["exact"] >= record["reward"] for record in tuned.history)
    assert any(record["reward"] > 0 for record in tuned.history)
    # a reference no sample can write: never exact, though the trained reward is earned
    tuned = train_rl(model, TOKENIZER, [Example("qa", "Q: a?", " zz")], stops_at_once, config)
    assert all(record["exact"] == 0 for record in tuned.history)
    assert any(record["reward"] > 0 for record in tuned.history)


def test_the_kl_penalty_starts_at_zero_and_holds_the_policy_near_its_reference():
    """k3 = e^r − r − 1 with r = log π_ref − log π is 0 where π = π_ref; weighted up it keeps π close."""
    prompts = [e.prompt for e in EXAMPLES] * 2
    answers = ["b", "a", "ab", " ", " b", "bb"]
    drift = {}
    for kl_coef in (0.0, 1.0):
        model = tiny_model(seed=1)
        config = RLConfig(steps=20, questions=2, group=8, max_new_tokens=4, lr=1e-2, kl_coef=kl_coef, seed=0)
        tuned = train_rl(model, TOKENIZER, EXAMPLES, starts_with_b, config)
        assert tuned.history[0]["kl"] == pytest.approx(0.0, abs=1e-6)
        drift[kl_coef] = token_kl(tuned.model, model, TOKENIZER, prompts, answers)  # exact KL, teacher-forced
    assert drift[1.0] * 5 < drift[0.0], drift


def test_train_rl_edge_cases_and_presets():
    model = tiny_model()
    with pytest.raises(ValueError, match="at least one question"):
        train_rl(model, TOKENIZER, [], checked(exact_reward), RLConfig(steps=1))
    tuned = train_rl(model, TOKENIZER, EXAMPLES, checked(exact_reward), RLConfig(steps=0))
    assert tuned.history == [] and tuned.model is not model
    assert all(torch.equal(a, b) for a, b in zip(tuned.model.state_dict().values(), model.state_dict().values()))
    # more questions asked than there are: each step asks every one once
    asked = []

    def recording(example, answers):
        asked.append((example, len(answers)))
        return [0.0] * len(answers)
    tuned = train_rl(model, TOKENIZER, EXAMPLES[:1], recording, RLConfig(steps=2, questions=5, group=3,
                                                                         max_new_tokens=2))
    assert len(tuned.history) == 2 and asked == [(EXAMPLES[0], 3)] * 2  # the Example itself and its whole group
    for preset, config in RL_SIZES.items():
        assert rl_config(preset) == config
        assert rl_config(preset, kl_coef=0.2) == RLConfig(**{**config.__dict__, "kl_coef": 0.2})
