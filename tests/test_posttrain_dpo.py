"""Preference pairs and DPO: the pairs against the stories' own facts (chosen = the fact, rejected = another
story's answer to the same question, one from the text first), DPO's loss, rewards and gradient against
float64 formulas written out here, sequence log-probabilities against a brute-force loop that runs the
model on each prefix alone, the token KL against torch.distributions, and a short DPO run that widens
the margin it is trained on while leaving its input model alone."""
import copy
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence

from minilm.apps.task_eval import normalize_answer
from minilm.apps.tasks import story_examples
from minilm.data import END_OF_TEXT, StoryWorld
from minilm.model import GPT, GPTConfig
from minilm.posttrain.dpo import (DPO_SIZES, DPOConfig, answer_log_probs, dpo_config, dpo_loss, encode_answers,
                                  pair_batch, preference_report, token_kl, token_log_probs, train_dpo)
from minilm.posttrain.preferences import preference_pairs
from minilm.tokenizer import CharTokenizer

STORIES = StoryWorld().stories(30, seed=0)
PAIRS = preference_pairs(STORIES, seed=0)
EXAMPLES = story_examples("qa", STORIES)
TOKENIZER = CharTokenizer.train([e.prompt + e.answer for e in EXAMPLES])
END = TOKENIZER.special_tokens[END_OF_TEXT]
CONTEXT = max(len(TOKENIZER.encode(e.prompt)) for e in EXAMPLES) + 64  # every prompt and any answer fit


def tiny_model(seed: int = 0, n_layer: int = 1, n_embd: int = 16) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, context_length=CONTEXT, n_layer=n_layer, n_head=2,
                         n_embd=n_embd)).eval()


def as_word(text: str, story_text: str) -> bool:
    """`text` occurs in the story as whole words (not inside a longer word: "hen" is not in "When")."""
    return re.search(r"\b" + re.escape(text.strip()) + r"\b", story_text) is not None


def pairs_by_story(pairs, stories):
    """Group the pairs by the story whose prompt they carry."""
    return [[pair for pair in pairs if pair.prompt.startswith(story.text + "\n")] for story in stories]


# ---- preference pairs ----------------------------------------------------------------------------

def test_chosen_is_the_fact_and_rejected_is_another_storys_answer():
    grouped = pairs_by_story(PAIRS, STORIES)
    assert sum(map(len, grouped)) == len(PAIRS)
    for story, pairs in zip(STORIES, grouped):
        qa = story.facts.qa
        assert pairs, "every story gets pairs"
        for pair in pairs:
            question, fact = qa[pair.question]
            assert pair.prompt == f"{story.text}\nQuestion: {question}\nAnswer:"
            assert pair.chosen == " " + fact
            assert pair.rejected.startswith(" ")
            assert normalize_answer(pair.rejected) != normalize_answer(fact)
            others = {other.facts.qa[pair.question][1] for other in STORIES if other is not story}
            assert pair.rejected.strip() in others
        # a pair for every question that some other story answers differently
        contrastable = [n for n, (_, fact) in enumerate(qa)
                        if any(normalize_answer(o.facts.qa[n][1]) != normalize_answer(fact) for o in STORIES)]
        assert sorted(pair.question for pair in pairs) == contrastable


def test_rejected_is_taken_from_the_story_text_when_an_alternative_is_there():
    """Where another story's answer occurs in this story's text, the rejected answer occurs there too."""
    checked = 0
    for story, pairs in zip(STORIES, pairs_by_story(PAIRS, STORIES)):
        for pair in pairs:
            fact = story.facts.qa[pair.question][1]
            alternatives = {o.facts.qa[pair.question][1] for o in STORIES} - {fact}
            alternatives = {a for a in alternatives if normalize_answer(a) != normalize_answer(fact)}
            if any(as_word(a, story.text) for a in alternatives):
                checked += 1
                assert pair.rejected.strip() in story.text
    assert checked >= 30  # the friend's name, the finder, ... : the rule is really exercised


def test_rejected_from_the_text_appears_there_as_a_word():
    for story, pairs in zip(STORIES, pairs_by_story(PAIRS, STORIES)):
        for pair in pairs:
            fact = story.facts.qa[pair.question][1]
            alternatives = {o.facts.qa[pair.question][1] for o in STORIES} - {fact}
            if any(as_word(a, story.text) for a in alternatives):
                assert as_word(pair.rejected, story.text), (pair.question, pair.rejected, fact)


def test_pairs_depend_on_the_seed_only():
    assert preference_pairs(STORIES, seed=0) == PAIRS
    assert preference_pairs(STORIES, seed=3) == preference_pairs(STORIES, seed=3)
    other = preference_pairs(STORIES, seed=1)
    assert [(p.prompt, p.chosen) for p in other] == [(p.prompt, p.chosen) for p in PAIRS]  # only rejected varies
    assert [p.rejected for p in other] != [p.rejected for p in PAIRS]


def test_too_few_distinct_stories_is_a_clear_error():
    for stories in ([STORIES[0]], [STORIES[1]] * 3):
        with pytest.raises(ValueError, match="give every question the same answer.*at least two that differ"):
            preference_pairs(stories)
    with pytest.raises(ValueError, match="the 0 stories"):
        preference_pairs([])


# ---- the loss --------------------------------------------------------------------------------------

def softplus64(z: float) -> float:
    """log(1 + e^z) without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def sigmoid64(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_and_rewards_equal_the_formula_in_float64(beta):
    generator = torch.Generator().manual_seed(int(beta * 10))
    pc, pr, rc, rr = (-20 * torch.rand(7, generator=generator, dtype=torch.float64) for _ in range(4))
    loss, chosen_reward, rejected_reward = dpo_loss(pc, pr, rc, rr, beta)
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    expected = math.fsum(softplus64(-z) for z in margins) / len(margins)  # −log σ(z) = log(1 + e^−z)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert chosen_reward.tolist() == pytest.approx([beta * (a - c) for a, c in zip(pc.tolist(), rc.tolist())], rel=1e-12)
    assert rejected_reward.tolist() == pytest.approx([beta * (b - d) for b, d in zip(pr.tolist(), rr.tolist())],
                                                     rel=1e-12)
    assert not chosen_reward.requires_grad and not rejected_reward.requires_grad
    # float32 inputs, the dtype the models give: the same within float32's precision
    loss32, *_ = dpo_loss(pc.float(), pr.float(), rc.float(), rr.float(), beta)
    assert loss32.item() == pytest.approx(expected, rel=1e-5)


def test_dpo_loss_at_large_margins_is_finite():
    zero = torch.zeros(2)
    for margin, expected in [(500.0, 0.0), (-500.0, 500.0), (0.0, math.log(2))]:
        loss, chosen, rejected = dpo_loss(torch.full((2,), margin), zero, zero, zero, beta=1.0)
        assert torch.isfinite(loss) and loss.item() == pytest.approx(expected, abs=1e-6)
    policy_chosen = torch.tensor([500.0, -500.0], requires_grad=True)
    loss, *_ = dpo_loss(policy_chosen, torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=1.0)
    loss.backward()
    assert torch.isfinite(policy_chosen.grad).all()
    assert policy_chosen.grad.tolist() == pytest.approx([0.0, -0.5], abs=1e-6)  # −σ(−z)/n


def test_dpo_gradient_is_minus_beta_sigmoid_of_minus_margin_over_n():
    generator = torch.Generator().manual_seed(5)
    beta, n = 0.3, 9
    pc = (-30 * torch.rand(n, generator=generator, dtype=torch.float64)).requires_grad_()
    pr, rc, rr = (-30 * torch.rand(n, generator=generator, dtype=torch.float64) for _ in range(3))
    loss, *_ = dpo_loss(pc, pr, rc, rr, beta)
    loss.backward()
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert pc.grad.tolist() == pytest.approx([-beta * sigmoid64(-z) / n for z in margins], rel=1e-10, abs=1e-15)


# ---- log-probabilities -------------------------------------------------------------------------------

def brute_force_answer_log_prob(model, prompt: str, answer: str) -> tuple[float, list[float]]:
    """Σ log π(token | everything before it) over the answer's tokens and the end token, one prefix at a time."""
    prompt_ids = TOKENIZER.encode(prompt)
    answer_ids = TOKENIZER.encode(answer) + [END]
    per_token = []
    with torch.no_grad():
        for j, token in enumerate(answer_ids):
            prefix = torch.tensor([prompt_ids + answer_ids[:j]])
            logits, _ = model(prefix)
            per_token.append(torch.log_softmax(logits[0, -1].double(), dim=-1)[token].item())
    return math.fsum(per_token), per_token


def test_answer_log_probs_equal_a_prefix_by_prefix_loop_end_token_included():
    model = tiny_model(seed=1, n_layer=2, n_embd=32)
    pairs = PAIRS[:3] + PAIRS[45:47]
    prompts = [p.prompt for p in pairs]
    for answers in ([p.chosen for p in pairs], [p.rejected for p in pairs]):
        got = answer_log_probs(model, TOKENIZER, prompts, answers)
        assert got.shape == (len(pairs),)
        brute = [brute_force_answer_log_prob(model, p, a) for p, a in zip(prompts, answers)]
        assert got.double().tolist() == pytest.approx([total for total, _ in brute], abs=1e-5)
        # per position: token_log_probs puts each answer token's log-prob at the position that predicts it
        x, y = encode_answers(TOKENIZER, prompts, answers)
        with torch.no_grad():
            table = token_log_probs(model, x, y)
        for row, (prompt, (_, per_token)) in enumerate(zip(prompts, brute)):
            start = len(TOKENIZER.encode(prompt)) - 1
            assert table[row, start:start + len(per_token)].double().tolist() == pytest.approx(per_token, abs=1e-5)
            assert (table[row, :start] == 0).all() and (table[row, start + len(per_token):] == 0).all()
            # without the end token's log-prob the sum would be different: the end is counted
            assert abs(got[row].item() - math.fsum(per_token[:-1])) > 1e-3


def test_padding_and_batching_change_no_log_prob():
    model = tiny_model(seed=2)
    short, long_ = PAIRS[0], max(PAIRS, key=lambda p: len(p.prompt) + len(p.rejected))
    assert len(long_.prompt + long_.rejected) > len(short.prompt + short.chosen)
    alone = answer_log_probs(model, TOKENIZER, [short.prompt], [short.chosen])
    padded = answer_log_probs(model, TOKENIZER, [short.prompt, long_.prompt], [short.chosen, long_.rejected])
    assert padded[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    prompts, answers = [p.prompt for p in PAIRS[:7]], [p.chosen for p in PAIRS[:7]]
    one_by_one = answer_log_probs(model, TOKENIZER, prompts, answers, batch_size=1)
    together = answer_log_probs(model, TOKENIZER, prompts, answers, batch_size=32)
    in_threes = answer_log_probs(model, TOKENIZER, prompts, answers, batch_size=3)
    assert torch.allclose(one_by_one, together, atol=1e-5) and torch.allclose(in_threes, together, atol=1e-5)


def test_answer_log_probs_keep_the_models_mode_and_need_no_gradient():
    model = tiny_model().train()
    got = answer_log_probs(model, TOKENIZER, [PAIRS[0].prompt], [PAIRS[0].chosen])
    assert model.training and not got.requires_grad


# ---- token KL ----------------------------------------------------------------------------------------

def test_token_kl_is_torch_distributions_kl_averaged_over_answer_positions():
    policy, reference = tiny_model(seed=3), tiny_model(seed=4)
    pairs = PAIRS[8:12]
    prompts, answers = [p.prompt for p in pairs], [p.chosen for p in pairs]
    kls = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            prompt_ids, answer_ids = TOKENIZER.encode(prompt), TOKENIZER.encode(answer) + [END]
            x = torch.tensor([(prompt_ids + answer_ids)[:-1]])
            mine, theirs = policy(x)[0][0].double(), reference(x)[0][0].double()  # (time, vocab)
            for t in range(len(prompt_ids) - 1, x.shape[1]):  # the positions that predict answer tokens
                kls.append(kl_divergence(Categorical(logits=mine[t]), Categorical(logits=theirs[t])).item())
    expected = math.fsum(kls) / len(kls)
    assert expected > 1e-4
    assert token_kl(policy, reference, TOKENIZER, prompts, answers) == pytest.approx(expected, rel=1e-4)
    assert token_kl(policy, reference, TOKENIZER, prompts, answers, batch_size=3) == pytest.approx(expected, rel=1e-4)
    assert token_kl(policy, policy, TOKENIZER, prompts, answers) == pytest.approx(0.0, abs=1e-7)
    policy.train(), reference.eval()
    token_kl(policy, reference, TOKENIZER, prompts, answers)
    assert policy.training and not reference.training  # each model is left in the mode it was in
    with pytest.raises(ValueError, match="at least one prompt"):
        token_kl(policy, reference, TOKENIZER, [], [])


# ---- training ----------------------------------------------------------------------------------------

def test_report_of_a_model_against_itself_is_all_ties():
    model = tiny_model(seed=5)
    pairs = PAIRS[:6]
    report = preference_report(model, model, TOKENIZER, pairs, beta=0.1)
    assert report.reward_accuracy == 0.5 and report.reward_margin == 0.0
    assert report.kl == pytest.approx(0.0, abs=1e-7) and report.pairs == 6
    chosen = answer_log_probs(model, TOKENIZER, [p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = answer_log_probs(model, TOKENIZER, [p.prompt for p in pairs], [p.rejected for p in pairs])
    assert report.likelihood_accuracy == pytest.approx(sum(c > r for c, r in zip(chosen, rejected)) / 6)


def test_train_dpo_widens_the_margin_it_trains_on_and_leaves_its_input_alone():
    model = tiny_model(seed=6)
    before = copy.deepcopy(model.state_dict())
    pairs = [p for p in PAIRS if p.question in (0, 1, 5)][:6]  # short answers: names and colours
    config = DPOConfig(steps=12, batch_size=6, lr=1e-2, beta=0.1, warmup_steps=1, seed=0)
    start = preference_report(model, model, TOKENIZER, pairs, beta=config.beta)
    tuned = train_dpo(model, TOKENIZER, pairs, config)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert tuned.model is not model and not tuned.model.training
    history = tuned.history
    assert [record["step"] for record in history] == list(range(1, 13))
    assert set(history[0]) == {"step", "loss", "accuracy", "margin", "seconds"}
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference: every margin 0
    assert history[0]["margin"] == pytest.approx(0.0, abs=1e-4)
    end = preference_report(tuned.model, model, TOKENIZER, pairs, beta=config.beta)
    assert end.reward_margin > start.reward_margin + 0.05
    assert end.reward_accuracy > 0.5
    assert end.likelihood_accuracy >= start.likelihood_accuracy
    assert end.kl > 0
    # the margin the report gives is β · Σ of the log-prob changes, computed here from answer_log_probs
    prompts = [p.prompt for p in pairs]
    change = [answer_log_probs(m, TOKENIZER, prompts, [p.chosen for p in pairs]).double()
              - answer_log_probs(m, TOKENIZER, prompts, [p.rejected for p in pairs]).double()
              for m in (tuned.model, model)]
    assert end.reward_margin == pytest.approx(config.beta * (change[0] - change[1]).mean().item(), abs=1e-5)


def test_pair_batch_draws_by_seed_and_step():
    rows = pair_batch(10, 64, seed=0, step=3)
    assert rows == pair_batch(10, 64, seed=0, step=3) and len(rows) == 64 and set(rows) <= set(range(10))
    assert rows != pair_batch(10, 64, seed=0, step=4) and rows != pair_batch(10, 64, seed=1, step=3)
    assert len(set(rows)) > 5  # draws spread over the pairs


def test_first_step_loss_with_nll_is_log_2_plus_the_chosen_cross_entropy():
    """At step 1 policy == reference, so DPO's part is log 2; nll_weight adds w · the chosen tokens' mean CE."""
    model = tiny_model(seed=7)
    pairs = PAIRS[:5]
    config = DPOConfig(steps=1, batch_size=4, nll_weight=0.5, seed=2)
    rows = pair_batch(len(pairs), config.batch_size, config.seed, 0)
    losses, count = [], 0
    with torch.no_grad():
        for row in rows:  # one chosen answer at a time, no padding
            prompt_ids = TOKENIZER.encode(pairs[row].prompt)
            answer_ids = TOKENIZER.encode(pairs[row].chosen) + [END]
            logits = model(torch.tensor([prompt_ids + answer_ids[:-1]]))[0][0].double()
            predicted = logits[len(prompt_ids) - 1:]  # the positions that predict the answer and the end
            losses.append(F.cross_entropy(predicted, torch.tensor(answer_ids), reduction="sum").item())
            count += len(answer_ids)
    expected = math.log(2) + 0.5 * math.fsum(losses) / count
    tuned = train_dpo(model, TOKENIZER, pairs, config)
    assert tuned.history[0]["loss"] == pytest.approx(expected, rel=1e-5)
    plain = train_dpo(model, TOKENIZER, pairs, DPOConfig(steps=1, batch_size=4, seed=2))
    assert plain.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_train_dpo_without_pairs_is_an_error_and_presets_fill_the_config():
    with pytest.raises(ValueError, match="at least one preference pair"):
        train_dpo(tiny_model(), TOKENIZER, [], DPOConfig(steps=1))
    for preset, config in DPO_SIZES.items():
        assert dpo_config(preset) == config
        assert dpo_config(preset, beta=0.5) == DPOConfig(**{**config.__dict__, "beta": 0.5})
    tuned = train_dpo(tiny_model(), TOKENIZER, PAIRS[:2], DPOConfig(steps=0))
    assert tuned.history == []
