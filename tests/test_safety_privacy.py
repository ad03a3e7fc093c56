"""PII masking: generated positives are found exactly where they were planted, hard negatives and story
text are left alone, and IP addresses agree with the standard library's ipaddress on random dotted numbers."""
import ipaddress
import random
import re
import string

import pytest

from minilm.data import StoryConfig, StoryWorld
from minilm.safety.privacy import PLACEHOLDERS, find_pii, mask_documents, mask_pii


def random_email(rng):
    local = rng.choice(string.ascii_lowercase) + "".join(
        rng.choice(string.ascii_lowercase + string.digits + "._+-") for _ in range(rng.randrange(0, 12)))
    labels = ["".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randrange(1, 9)))
              for _ in range(rng.randrange(1, 4))]
    top = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(2, 7)))
    return f"{local.rstrip('.')}@{'.'.join(labels)}.{top}"


def random_key(rng):
    form = rng.randrange(3)
    if form == 2:
        return "".join(rng.choice("0123456789abcdef") for _ in range(rng.randrange(32, 65)))
    body = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randrange(16, 41)))
    return ("sk-", "key-")[form] + body


def random_phone(rng):
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    forms = [f"+{rng.randrange(1, 99)} {d(2)} {d(4)} {d(4)}", f"+1-{d(3)}-{d(3)}-{d(4)}", f"({d(3)}) {d(3)}-{d(4)}",
             f"{d(3)}-{d(3)}-{d(4)}", f"{d(3)}.{d(3)}.{d(4)}", f"0{d(2)} {d(4)} {d(4)}", f"07{d(3)} {d(6)}"]
    return rng.choice(forms)


def random_ip(rng):
    return ".".join(str(rng.randrange(256)) for _ in range(4))


MAKERS = {"email": random_email, "key": random_key, "phone": random_phone, "ip": random_ip}
SENTENCES = ["Once, a friendly girl named Mia lived in a windy barn.", "Leo often played with a grumpy panda.",
             "In the end, Mia felt cheerful, and Leo laughed."]


def planted_text(rng, kind):
    """A sentence, then the item with a few words around it, then a sentence: (text, start, item)."""
    item = MAKERS[kind](rng)
    before = f"{rng.choice(SENTENCES)} Please use {item}"
    return before + f" for now. {rng.choice(SENTENCES)}", len(before) - len(item), item


@pytest.mark.parametrize("kind", list(MAKERS))
def test_generated_items_are_found_exactly_where_they_were_planted(kind):
    rng = random.Random(kind)
    for _ in range(200):
        text, start, item = planted_text(rng, kind)
        matches = find_pii(text)
        assert [(m.kind, m.start, m.end, m.text) for m in matches] == [(kind, start, start + len(item), item)], text
        assert mask_pii(text) == text[:start] + PLACEHOLDERS[kind] + text[start + len(item):]


def test_an_item_at_the_end_of_a_sentence_keeps_its_full_stop():
    assert mask_pii("Write to mia.48291@example.org.") == "Write to [email]."
    assert mask_pii("The server is 10.0.0.1.") == "The server is [ip]."
    assert mask_pii("Call +44 20 7946 0958.") == "Call [phone]."


HARD_NEGATIVES = [
    "a@b", "mail me at a@b or x@y.z", "user@localhost", "the @ sign",  # no dot and a 2+ letter top-level part
    "Python 3.12.1 and Windows 10.0.19041", "version 1.2.3-beta", "on 2024-01-15 at 12:30",  # versions, dates
    "256.1.1.1", "1.2.3.4.5", "10.0.0", "999.999.999.999",  # not four numbers 0-255
    "the door code is 48291", "1,000,000 stars", "call 12345", "page 555-12",  # short or bare numbers
    "sk-short", "key-0123456789abcde", "monkey-abcdefghijklmnopqrst", "0123456789abcdef0123456789abcde",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives_are_not_pii(text):
    assert find_pii(text) == []
    assert mask_pii(text) == text


def test_a_four_part_version_number_is_taken_for_an_address_as_documented():
    assert [m.kind for m in find_pii("release 1.2.3.4")] == ["ip"]


def test_story_text_is_left_unchanged():
    stories = [s.text for s in StoryWorld(StoryConfig()).stories(300, seed=4)]
    masked, counts = mask_documents(stories)
    assert masked == stories
    assert counts == {kind: 0 for kind in PLACEHOLDERS}


def dotted_quads_by_ipaddress(text):
    """An independent reading: every maximal run of digits and dots that ipaddress accepts as IPv4."""
    found = []
    for run in re.finditer(r"[\d.]+", text):
        candidate = run.group().strip(".")
        try:
            ipaddress.IPv4Address(candidate)
        except ValueError:
            continue
        found.append(candidate)
    return found


def test_ip_addresses_agree_with_the_ipaddress_module_on_random_dotted_numbers():
    rng = random.Random(0)
    for _ in range(2000):
        parts = [str(rng.choice([rng.randrange(256), rng.randrange(1000)])) for _ in range(rng.randrange(2, 6))]
        text = f"see {'.'.join(parts)} now"
        assert [m.text for m in find_pii(text) if m.kind == "ip"] == dotted_quads_by_ipaddress(text), text


def test_mask_documents_counts_every_kind():
    rng = random.Random(1)
    texts, planted = [], {kind: 0 for kind in MAKERS}
    for _ in range(100):
        kind = rng.choice(list(MAKERS))
        texts.append(planted_text(rng, kind)[0])
        planted[kind] += 1
    masked, counts = mask_documents(texts)
    assert counts == planted
    for kind, placeholder in PLACEHOLDERS.items():
        assert sum(text.count(placeholder) for text in masked) == planted[kind]


def test_several_items_in_one_text_are_all_masked_in_order():
    text = "Mail mia@example.org or call (555) 123-4567 from 192.168.1.20 with sk-abcdefghijklmnopqrst."
    assert [m.kind for m in find_pii(text)] == ["email", "phone", "ip", "key"]
    assert mask_pii(text) == "Mail [email] or call [phone] from [ip] with [key]."


def test_bad_input_is_refused_with_one_clear_line():
    with pytest.raises(ValueError, match="string"):
        find_pii(None)
    with pytest.raises(ValueError, match="list of documents"):
        mask_documents("one text")
