"""The teachers' quiz bank, teacher/quizzes/<notebook stem>.md, checked against the course itself.

Every chapter notebook has a quiz of 6 to 10 questions in a strict layout; every question names the
Markdown heading of the section that teaches it, and that heading must exist, word for word, in the
notebook. Every numeric answer names a check function below that computes it from minilm, so an
answer cannot go stale when the code changes: the test parses the number in the Markdown (thousands
separators removed) and compares it with the computed value, exactly for `rounding: exact`, else
within half a unit of the last digit the rounding names.

A question, as the files write it:

    ### Q3. How many parameters does ...?
    - kind: numeric                       numeric | short | choice
    - answer: 182,016
    - rounding: exact                     numeric only: exact | N decimals | N significant figures
    - check: cpu_preset_parameters        numeric only: a function registered below with @check
    - taught in: notebooks/03_transformer.ipynb — "## 6. Where the parameters sit, and what a token costs"
    - why: one or two sentences a teacher can read out.

A choice question lists its options as `- a) ...` to `- d) ...` and answers with the letter.
"""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.exercises.harness import student_copy

ROOT = Path(__file__).resolve().parents[1]
QUIZZES, NOTEBOOKS = ROOT / "teacher" / "quizzes", ROOT / "notebooks"
pytestmark = pytest.mark.skipif(student_copy(), reason="a teachers' check: a student copy has no teacher/")
KINDS = ("numeric", "short", "choice")
REQUIRED = ("kind", "answer", "taught in", "why")
NUMERIC_ONLY = ("rounding", "check")
OPTIONS = ("a", "b", "c", "d")
FEWEST, MOST, FEWEST_NUMERIC = 6, 10, 2

QUESTION = re.compile(r"^### Q(\d+)\. (\S.*)$")
FIELD = re.compile(r"^- ([a-z][a-z ]*): (\S.*)$")
OPTION = re.compile(r"^- ([a-z])\) (\S.*)$")
TAUGHT_IN = re.compile(r'^notebooks/(?P<notebook>[\w.-]+\.ipynb) — "(?P<heading>#{1,6} .+)"$')
NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+−]?\d+)?")
ROUNDING = re.compile(r"^(?:exact|(\d+) (decimals?|significant figures?))$")


# ---- the parser --------------------------------------------------------------------------------

@dataclass
class Question:
    chapter: str  # the notebook stem, which is the quiz file's name
    number: int
    text: str
    fields: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # layout errors found while parsing

    def __str__(self) -> str:
        return f"{self.chapter} Q{self.number}"


@dataclass
class Quiz:
    chapter: str
    title: str | None
    questions: list[Question]
    problems: list[str]  # layout errors outside the questions


def parse_quiz(path: Path) -> Quiz:
    """A quiz file: a '# ' title, free text, then questions whose every line is a field or an option."""
    title, questions, problems = None, [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        heading = QUESTION.match(line)
        if heading:
            questions.append(Question(path.stem, int(heading[1]), heading[2]))
        elif not questions:  # the header: a title, then any prose a teacher wants
            if line.startswith("# ") and title is None:
                title = line[2:].strip()
            elif line.startswith("#"):
                problems.append(f"line {number}: a heading before the first question: {line!r}")
        elif line.strip():
            question, option, item = questions[-1], OPTION.match(line), FIELD.match(line)
            if option:
                question.options.setdefault(option[1], option[2])
            elif item and item[1] not in question.fields:
                question.fields[item[1]] = item[2].strip()
            else:
                question.problems.append(f"line {number} is not a new field or option: {line!r}")
    return Quiz(path.stem, title, questions, problems)


def notebook_headings(path: Path) -> set[str]:
    """Every Markdown heading line of a notebook's Markdown cells, outside fenced code blocks."""
    headings = set()
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        fenced = False
        for line in "".join(cell["source"]).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif not fenced and re.match(r"#{1,6} ", line):
                headings.add(line.strip())
    return headings


def parse_number(answer: str) -> tuple[float, str]:
    """The first number written in an answer, and its text without thousands separators."""
    found = NUMBER.search(answer)
    if found is None:
        raise AssertionError(f"no number in the answer {answer!r}")
    text = found[0].replace(",", "").replace("−", "-")
    return float(text), text


def allowed_error(rounding: str, text: str) -> float | None:
    """Half a unit of the last digit the rounding keeps (None: exact). Checks the text keeps that many."""
    match = ROUNDING.match(rounding)
    assert match, f"rounding {rounding!r} is not 'exact', 'N decimals' or 'N significant figures'"
    mantissa = re.split(r"[eE]", text.lstrip("+-"))[0]
    if match[1] is None:
        assert "." not in mantissa and "e" not in text.lower(), f"an exact answer is a whole number, got {text}"
        return None
    digits = int(match[1])
    if match[2].startswith("decimal"):
        written = len(mantissa.split(".")[1]) if "." in mantissa else 0
        assert written == digits, f"{text} has {written} decimals, the rounding says {digits}"
        return 0.5 * 10 ** -digits
    significant = len(mantissa.replace(".", "").lstrip("0"))
    assert significant == digits, f"{text} has {significant} significant figures, the rounding says {digits}"
    value = abs(float(text))
    return 0.5 * 10 ** (math.floor(math.log10(value)) - digits + 1)


# ---- the check functions: one per numeric question, each computed from minilm ----------------

CHECKS = {}


def check(function):
    """Register a check function under its name, the name a question's `check:` field gives."""
    CHECKS[function.__name__] = function
    return function


@functools.lru_cache(maxsize=None)
def tiny_gpt():
    """The cpu preset's model shape (chapter 4's `tiny`) with chapter 4's vocabulary of 1,024."""
    from minilm.course_model import RECIPES
    from minilm.model import GPT, model_config

    torch.manual_seed(0)
    return GPT(model_config(RECIPES["cpu"].size, RECIPES["cpu"].vocab_size))


# 00 · setup

@check
def preset_count():
    from minilm.presets import PRESETS
    return len(PRESETS)


@check
def cpu_row_of_step_table():
    from minilm import choose
    return choose({"smoke": 20, "cpu": 2_000, "gpu": 20_000}, "cpu")


# 01 · data and tokens

@check
def jaccard_abc_bcd():
    from minilm.data.dedup import jaccard
    return jaccard({"a", "b", "c"}, {"b", "c", "d"})


@check
def lsh_candidate_probability_at_half():
    from minilm.data import CorpusConfig
    config = CorpusConfig()
    rows = config.num_perm // config.bands
    return 1 - (1 - 0.5 ** rows) ** config.bands


@check
def first_merge_count():
    from minilm.bpe_train import count_pretokens, train_merges
    tiny = "the cat sat on the mat. the cat ate the rat, and that is the cat's hat."
    return train_merges(count_pretokens([tiny]), vocab_size=257)[0].count


@check
def byte_tokens_for_one_chinese_character():
    from minilm.tokenizer import BPETokenizer
    return len(BPETokenizer.from_merges([], special_tokens=()).encode("数"))


@check
def bytes_per_token_id_on_disk():
    from minilm.course_model import RECIPES
    from minilm.tokens import smallest_unsigned_dtype
    return smallest_unsigned_dtype(RECIPES["cpu"].vocab_size).itemsize


# 02 · attention

@check
def softmax_largest_of_one_two_three():
    from minilm.attention import softmax
    return softmax(torch.tensor([1.0, 2.0, 3.0]))[-1].item()


@check
def sat_attends_to_cat():
    from minilm.attention import scaled_dot_product_attention
    embeddings = torch.tensor([[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 1], [0, 0, 0, 1], [0, 0, 1, 0]],
                              dtype=torch.float64)  # The cat sat on the mat: animal, action, place, function
    w_q = torch.tensor([[0, 4, 0, 0], [4, 0, 3, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.float64)
    _, weights = scaled_dot_product_attention(embeddings @ w_q, embeddings, embeddings)
    return weights[2, 1].item()  # query "sat", key "cat"


@check
def causal_pairs_of_six_tokens():
    from minilm.attention import causal_mask
    return int(causal_mask(6).sum())


@check
def multi_head_parameters_12_by_3():
    from minilm.attention import MultiHeadAttention
    return sum(p.numel() for p in MultiHeadAttention(d_model=12, n_heads=3).parameters())


@check
def attention_flops_t128_d64():
    from torch.utils.flop_counter import FlopCounterMode
    from minilm.attention import causal_mask, scaled_dot_product_attention
    q, k, v = torch.randn(3, 1, 1, 128, 64).unbind(0)
    with FlopCounterMode(display=False) as counter:
        scaled_dot_product_attention(q, k, v, mask=causal_mask(128))
    return counter.get_total_flops()


# 03 · the Transformer

@check
def cpu_preset_parameters():
    from minilm.model import count_parameters
    return count_parameters(tiny_gpt())["total"]


@check
def tied_head_saving():
    from dataclasses import replace
    from minilm.model import GPT, count_parameters
    untied = GPT(replace(tiny_gpt().config, tie_embeddings=False))
    return count_parameters(untied)["total"] - count_parameters(tiny_gpt())["total"]


@check
def training_flops_per_token_cpu_preset():
    from minilm.model import flops_per_token
    return flops_per_token(tiny_gpt().config)["training"]


@check
def kv_cache_bytes_cpu_preset():
    cache = tiny_gpt().new_cache(batch=1)
    return sum(t.numel() * t.element_size() for t in (cache.keys, cache.values))


@check
def untrained_loss_character_vocabulary():
    from minilm.tokenizer import CharTokenizer
    text = ("the cat sat on the mat. the dog lay by the door. a bird sang in the old tree, "
            "and the cat watched it, very still, from the warm mat.")
    return math.log(CharTokenizer.train([text]).vocab_size)


@check
def top_p_kept_tokens():
    from minilm.generate import filter_top_p
    logits = torch.tensor([3.0, 2.5, 2.0, 1.0, 0.5, 0.0, -0.5, -1.0])
    return int(torch.isfinite(filter_top_p(logits, 0.8)).sum())


# 04 · training

@check
def uniform_loss_cpu_vocabulary():
    from minilm.course_model import RECIPES
    vocab = RECIPES["cpu"].vocab_size
    return torch.nn.functional.cross_entropy(torch.zeros(1, vocab), torch.tensor([0])).item()


@check
def first_step_learning_rate():
    from minilm.course_model import RECIPES
    from minilm.train import learning_rate
    return learning_rate(0, RECIPES["cpu"].train)


@check
def halfway_decay_learning_rate():
    from minilm.course_model import RECIPES
    from minilm.train import learning_rate
    run = RECIPES["cpu"].train
    return learning_rate(run.warmup_steps + (run.steps - run.warmup_steps) // 2, run)


@check
def recipe_tokens_per_step():
    from minilm.course_model import RECIPES
    return RECIPES["cpu"].train.tokens_per_step


# 04b · distributed

@check
def adamw_training_bytes_cpu_preset():
    from minilm.model import count_parameters
    weight, gradient, adam_moments = 4, 4, 8
    return (weight + gradient + adam_moments) * count_parameters(tiny_gpt())["total"]


@check
def pipeline_bubble_four_by_four():
    from minilm.distributed import pipeline_schedule
    schedule = pipeline_schedule(stages=4, micro_batches=4)
    return sum(slot == "" for row in schedule for slot in row) / (4 * len(schedule[0]))


@check
def ring_bytes_one_megabyte_four_processes():
    from minilm.distributed import ring_all_reduce_bytes
    return ring_all_reduce_bytes(1_000_000, 4)


@check
def rank_one_batch_at_step_two():
    from minilm.train import Process
    return Process(rank=1, world_size=2).batch_index(step=2, micro=0, accumulation=1)


# 05 · evaluation

@check
def perplexity_of_loss_1_2():
    from minilm.evaluate import perplexity
    return perplexity(1.2)


@check
def bits_per_byte_example():
    from minilm.evaluate import bits_per_byte
    return bits_per_byte(1.0, n_tokens=1_000, n_bytes=4_000)


@check
def brevity_penalty_9_of_10():
    from minilm.evaluate import brevity_penalty
    return brevity_penalty(hyp_length=9, ref_length=10)


@check
def clipped_matches_the_the():
    from minilm.evaluate import clipped_matches
    return clipped_matches("the the the the".split(), ["the cat".split()], 1)[0]


@check
def rouge_l_cat_on_mat():
    from minilm.evaluate import rouge_l
    return rouge_l("the cat sat on the mat", ["the cat lay on a mat"]).f_measure


@check
def ece_two_bins():
    from minilm.evaluate import expected_calibration_error
    confidences = [0.9] * 10 + [0.6] * 10
    correct = [1] * 9 + [0] + [1] * 3 + [0] * 7
    return expected_calibration_error(confidences, correct)


# 06 · applications

@check
def learnt_positions_who_mia():
    from minilm.posttrain.finetune import encode_example
    from minilm.tokenizer import CharTokenizer
    _, targets = encode_example(CharTokenizer.train(["Who? Mia"]), "Who? ", "Mia")
    return sum(t != -100 for t in targets)


@check
def mood_ceiling_value():
    from minilm.apps.tasks import mood_ceiling
    return mood_ceiling()


@check
def wilson_low_135_of_150():
    from minilm.apps.task_eval import wilson_interval
    return wilson_interval(135, 150)[0]


@check
def exact_match_red_kite():
    from minilm.apps.task_eval import exact_match
    return exact_match(["The red kite."], ["red kite"])


@check
def chat_tokens_new_parameters():
    from minilm.apps.chat import add_chat_tokens
    from minilm.model import GPT, count_parameters, model_config
    from minilm.tokenizer import BPETokenizer
    tokenizer = BPETokenizer.from_merges([])
    model = GPT(model_config("nano", tokenizer.vocab_size))
    _, chat_model = add_chat_tokens(tokenizer, model)
    return count_parameters(chat_model)["total"] - count_parameters(model)["total"]


# 06b · post-training

@check
def dpo_loss_at_start():
    from minilm.posttrain.dpo import dpo_loss
    chosen, rejected = torch.tensor([-2.0]), torch.tensor([-5.0])
    return dpo_loss(chosen, rejected, chosen, rejected, beta=0.1)[0].item()


@check
def dpo_loss_example():
    from minilm.posttrain.dpo import dpo_loss
    policy_chosen, policy_rejected = torch.tensor([-2.0]), torch.tensor([-5.0])
    reference_chosen, reference_rejected = torch.tensor([-3.0]), torch.tensor([-4.0])
    return dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1)[0].item()


@check
def right_answer_advantage():
    from minilm.posttrain.rl import group_advantages
    return group_advantages(torch.tensor([[1.0] + [0.0] * 7]))[0, 0].item()


@check
def lora_rank4_trainable():
    from minilm.posttrain.lora import LoRAConfig, add_lora, trainable_parameters
    return trainable_parameters(add_lora(tiny_gpt(), LoRAConfig(rank=4)))


@check
def lora_rank1_optimizer_shrink():
    from minilm.posttrain.lora import LoRAConfig, add_lora, trainable_parameters
    adapted = add_lora(tiny_gpt(), LoRAConfig(rank=1))
    return trainable_parameters(tiny_gpt()) / trainable_parameters(adapted)  # AdamW keeps 2 moments of each


# 06c · deployment

@check
def ragged_mask_visible_keys():
    from minilm.deploy.batching import SlotCache
    cache = SlotCache(tiny_gpt(), slots=3)
    cache.lengths[:] = torch.tensor([4, 0, 2])
    cache.use([0, 1, 2])
    return int(cache.attention_mask(1).sum())


@check
def absmax_int8_of_half():
    from minilm.deploy.quantize import absmax_quantize
    q, _ = absmax_quantize(torch.tensor([[0.5, -1.27, 0.3]]))
    return int(q[0, 0])


@check
def int8_bytes_first_mlp_layer():
    from minilm.deploy.quantize import Int8Linear
    layer = Int8Linear.from_linear(tiny_gpt().blocks[0].mlp.up)
    return sum(t.numel() * t.element_size() for t in (layer.weight_int8, layer.scale))


# 07 · general data

@check
def thirteen_grams_in_twenty_words():
    from minilm.data.contamination import ngram_keys
    return len(ngram_keys(" ".join(f"w{i}" for i in range(20)), 13))


@check
def overlap_when_first_15_words_trained():
    from minilm.data.contamination import contamination_report
    words = [f"w{i}" for i in range(20)]
    report = contamination_report([" ".join(words[:15])], {"example": [" ".join(words)]})
    return report["example"].mean_overlap


@check
def t_interval_three_seeds():
    from minilm.transfer import mean_and_interval
    return mean_and_interval([0.6, 0.7, 0.8])[1]


@check
def translation_passes_at_100_examples():
    from minilm.transfer import EXPERIMENT_SIZES, subset_size
    sizes = EXPERIMENT_SIZES["cpu"]
    return sizes.task_steps["translation"] * sizes.finetune.batch_size / subset_size(sizes.labelled, 0.1)


# 08 · inside and safety

@check
def first_mention_floor():
    from minilm.data import StoryWorld
    return math.log(len(StoryWorld().words["names"]))


@check
def max_exposure_five_digits():
    from minilm.safety.canaries import Canary, secret_space
    return math.log2(len(secret_space(Canary("The door code of the shed is ", "48213", "door", 0))))


@check
def pii_matches_in_example():
    from minilm.safety.privacy import find_pii
    return len(find_pii("You can write to Mia at mia.48213@example.org. The key to the shed is sk-abcdefghijk48213."))


# ---- the tests ---------------------------------------------------------------------------------

CHAPTERS = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
QUIZ_FILES = {path.stem: parse_quiz(path) for path in sorted(QUIZZES.glob("*.md"))}
NUMERIC = [q for quiz in QUIZ_FILES.values() for q in quiz.questions if q.fields.get("kind") == "numeric"]


def test_every_chapter_has_a_quiz_and_every_quiz_a_chapter():
    assert CHAPTERS, f"no notebooks found in {NOTEBOOKS}"
    assert sorted(QUIZ_FILES) == CHAPTERS, "teacher/quizzes/ needs exactly one <notebook stem>.md per notebook"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_quiz_layout(chapter):
    quiz = QUIZ_FILES.get(chapter)
    assert quiz is not None, f"teacher/quizzes/{chapter}.md is missing"
    assert not quiz.problems, quiz.problems
    assert quiz.title and chapter in quiz.title, f"the first line should be '# ...' naming {chapter}"
    assert FEWEST <= len(quiz.questions) <= MOST, f"{len(quiz.questions)} questions, want {FEWEST} to {MOST}"
    assert [q.number for q in quiz.questions] == list(range(1, len(quiz.questions) + 1)), "number them Q1, Q2, ..."
    kinds = [q.fields.get("kind") for q in quiz.questions]
    assert kinds.count("numeric") >= FEWEST_NUMERIC, f"at least {FEWEST_NUMERIC} numeric questions per chapter"
    for question in quiz.questions:
        assert not question.problems, f"{question}: {question.problems}"
        missing = [name for name in REQUIRED if name not in question.fields]
        assert not missing, f"{question} lacks {missing}"
        kind = question.fields["kind"]
        assert kind in KINDS, f"{question}: kind {kind!r} is not one of {KINDS}"
        numeric_fields = [name for name in NUMERIC_ONLY if name in question.fields]
        if kind == "numeric":
            assert numeric_fields == list(NUMERIC_ONLY), f"{question}: a numeric question needs {NUMERIC_ONLY}"
            parse_number(question.fields["answer"])
        else:
            assert not numeric_fields, f"{question}: only numeric questions have {NUMERIC_ONLY}"
        if kind == "choice":
            assert sorted(question.options) == list(OPTIONS), f"{question}: list the options a) to d)"
            letter = re.match(r"([a-z])\b", question.fields["answer"])
            assert letter and letter[1] in question.options, f"{question}: the answer must name an option"
        else:
            assert not question.options, f"{question}: only choice questions list options"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_taught_in_headings_exist_in_the_notebook(chapter):
    quiz = QUIZ_FILES.get(chapter)
    assert quiz is not None, f"teacher/quizzes/{chapter}.md is missing"
    headings = notebook_headings(NOTEBOOKS / f"{chapter}.ipynb")
    for question in quiz.questions:
        where = TAUGHT_IN.match(question.fields.get("taught in", ""))
        assert where, f'{question}: write taught in as notebooks/NAME.ipynb — "## heading"'
        assert where["notebook"] == f"{chapter}.ipynb", f"{question} is taught in another chapter's notebook"
        assert where["heading"] in headings, f"{question}: no heading {where['heading']!r} in {chapter}.ipynb"


@pytest.mark.parametrize("question", NUMERIC, ids=str)
def test_numeric_answer_matches_minilm(question):
    name = question.fields.get("check", "")
    assert name in CHECKS, f"{question}: no check function {name!r} in teacher/test_quizzes.py"
    written, text = parse_number(question.fields["answer"])
    error = allowed_error(question.fields["rounding"], text)
    computed = float(CHECKS[name]())
    if error is None:
        assert computed == written, f"{question}: the answer says {text}, minilm gives {computed}"
    else:
        assert abs(computed - written) <= error * (1 + 1e-9), (
            f"{question}: the answer says {text} ({question.fields['rounding']}), minilm gives {computed!r}")


def test_every_check_function_is_used_once():
    named = [q.fields.get("check") for q in NUMERIC]
    assert sorted(name for name in named if named.count(name) > 1) == [], "two questions share a check"
    assert sorted(set(CHECKS) - set(named)) == [], "check functions that no question names"


def test_the_parser_reads_the_documented_layout(tmp_path):
    sample = tmp_path / "00_sample.md"
    sample.write_text('# Quiz: 00_sample\n\nFor teachers.\n\n### Q1. Pick one?\n- kind: choice\n- a) yes\n'
                      '- b) no\n- answer: b\n- taught in: notebooks/00_sample.ipynb — "## 1. Start"\n'
                      "- why: because.\n- why: a field given twice\nloose prose\n", encoding="utf-8")
    quiz = parse_quiz(sample)
    (question,) = quiz.questions
    assert quiz.title == "Quiz: 00_sample" and question.text == "Pick one?"
    assert question.options == {"a": "yes", "b": "no"} and question.fields["answer"] == "b"
    assert TAUGHT_IN.match(question.fields["taught in"])["heading"] == "## 1. Start"
    assert question.fields["why"] == "because." and len(question.problems) == 2  # the second why, the prose
    assert parse_number("about 182,016 numbers") == (182016.0, "182016")
    assert allowed_error("3 decimals", "0.665") == pytest.approx(5e-4)
    assert allowed_error("3 significant figures", "2.97e-5") == pytest.approx(5e-8)
    with pytest.raises(AssertionError):
        allowed_error("2 decimals", "0.665")  # the text must keep the digits its rounding names
