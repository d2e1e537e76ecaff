"""forge.pii: each kind found with its validator, masked, redacted; clean text (numbers, dates, prices) is not PII;
``forge data scan`` and ``forge data inspect`` through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from forge import pii


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("write to jo.smith+x@mail.example.co.uk today", "email", "jo.smith+x@mail.example.co.uk"),
    ("call +44 20 7946 0958 now", "phone", "+44 20 7946 0958"),
    ("call (415) 555-0132", "phone", "(415) 555-0132"),
    ("call 415-555-0132", "phone", "415-555-0132"),
    ("card 4111 1111 1111 1111 exp", "card", "4111 1111 1111 1111"),
    ("amex 3782-822463-10005", "card", "3782-822463-10005"),
    ("pay 5555555555554444.", "card", "5555555555554444"),
    ("IBAN GB82 WEST 1234 5698 7654 32 ok", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban DE89370400440532013000", "iban", "DE89370400440532013000"),
    ("from 192.168.10.1 to", "ipv4", "192.168.10.1"),
    ("host 2001:db8:85a3::8a2e:370:7334 up", "ipv6", "2001:db8:85a3::8a2e:370:7334"),
    ("ssn 536-22-1234", "ssn", "536-22-1234"),
    ("aws AKIAIOSFODNN7EXAMPLE key", "secret", "AKIAIOSFODNN7EXAMPLE"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl", "secret", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123", "secret", "Bearer abcdefghijklmnopqrstuvwxyz0123"),
    ("token ghp_" + "a1" * 18, "secret", "ghp_" + "a1" * 18),
])
def test_each_kind_is_found(text, kind, value):
    found = pii.find(text)
    assert [(f.kind, f.value) for f in found] == [(kind, value)]
    assert pii.redact(text) == text.replace(value, f"[{kind.upper()}]")
    assert value not in found[0].masked()


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # Luhn fails
    "GB82 WEST 1234 5698 7654 33",  # mod-97 fails
    "DE8937040044053201300",  # wrong length for DE
    "ssn 000-12-3456 or 666-12-3456 or 900-12-3456 or 123-00-4567",  # invalid areas and groups
    "ip 999.1.1.1 and 1.2.3",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. 48/2 = 24",
    "It costs $1,234,567.89 on 2023-04-05 at 12:30:45; call ext. 1234; order 1234567890123; zip 94105-1234",
    "the ratio 3:2:1 and times 10:30 and 2:15:00, scores 21-14-7",
    "ISBN 978-3-16-148410-0, year 1999, 2,500 people, 3.14159, 100%",
    "a 16 digit id 1234567812345678 that fails luhn",
])
def test_clean_text_has_no_findings(text):
    assert pii.find(text) == []


def test_neighbouring_numbers_and_words_do_not_hide_a_value():
    text = "ISBN 978-6-43-107505-3 5563 4746 1658 2206 and NL64 0414 4088 6375 98 ISBN, then 5178-0253-9443-1599 54,709"
    assert [(f.kind, f.value) for f in pii.find(text)] == [
        ("card", "5563 4746 1658 2206"), ("iban", "NL64 0414 4088 6375 98"), ("card", "5178-0253-9443-1599")]


def test_luhn_and_iban_validators():
    assert pii.luhn_ok("79927398713") and not pii.luhn_ok("79927398710")
    assert pii.iban_ok("NL91ABNA0417164300") and not pii.iban_ok("NL91ABNA0417164301")


def test_masks_keep_little():
    assert pii.mask("email", "jo@example.com") == "j*@e******.com"
    assert pii.mask("card", "4111 1111 1111 1111") == "**** **** **** 1111"
    assert pii.mask("secret", "AKIAIOSFODNN7EXAMPLE") == "AKIA************"


def test_records_are_walked_with_field_paths():
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "mail a@b.io"}]}
    [(field, finding)] = pii.scan_record(record)
    assert field == "messages[1].content" and finding.kind == "email"
    assert pii.redact_record(record)["messages"][1]["content"] == "mail [EMAIL]"


def test_parse_kinds():
    assert pii.parse_kinds("card, iban") == ("card", "iban") and pii.parse_kinds("all") == pii.KINDS
    with pytest.raises(ValueError, match="unknown PII kind 'cards'"):
        pii.parse_kinds("cards")


# -- the prefilter (maybe_pii) and batched scanning: fast paths that must not change what find() finds -----------

NEAR_MISSES = [
    "ssn \u0663\u0664\u0665-\u0662\u0662-\u0661\u0662\u0663\u0664 in Arabic-Indic digits",  # \d matches them
    "call (\u0664\u0661\u0665) \u0665\u0665\u0665-\u0660\u0661\u0663\u0662", "caf\u00e9 4111 1111 1111 1111",
    "lone surrogate \ud800 and 536-22-1234", "+44 20 7946 0958", "+1 2 34 56 78 90", "+1 (415) 555.0132",
    "555.555.0132", "(415)555-0132", "4111-1111-1111-1111", "5555 5555 5555 4444", "4111 11111111 1111",
    "10.0.0.1", "1.2.3.45", "fe80::1", "a:b::c", "::1:2:3", "ratio 3:2:1", "GB82WEST12345698765432",
    "xoxb-123456789012-abc", "sk-" + "a" * 40, "hf_" + "b" * 32, "AIza" + "c" * 35, "AKIA" + "D" * 16,
    "Bearer\n" + "e" * 24, "-----BEGIN PRIVATE KEY-----", "4111111111111111", "3782 822463 10005",
    "numbers 12 345 6789 and 1234 5678", "2023-04-05 12:30:45", "$1,234,567.89", "version 1.2.3.4.5",
]


def test_prefilter_never_hides_a_finding():
    """maybe_pii is a necessary condition: on every text where it says no, the full scan finds nothing. Checked on
    the cases above and on a few thousand generated strings made of the characters and fragments patterns use."""
    import random

    rng = random.Random(0)
    fragments = ["@", "a@b.io", ":", "::", "1", "12", "2001:db8::1", "-", "_", " ", ".", "(", ")", "+", "+44", "AKIA",
                 "ghp_", "hf_", "sk-", "xoxb-", "Bearer ", "PRIVATE KEY", "-----BEGIN ", "GB", "DE89", "\u0664",
                 "\u0661\u0662\u0663", "\u00e9", "\n", "x", "Ab", "AIza", "4111", "1111", "555-0132", "(415)",
                 "192.168.", "abcdefghij", "KLMNOPQRST", "0123456789", "fe80::"]
    texts = list(NEAR_MISSES)
    for _ in range(4000):
        texts.append("".join(rng.choice(fragments) if rng.random() < 0.7 else rng.choice("0123456789 .-:@ABx_+")
                             for _ in range(rng.randint(1, 12))))
    skipped = 0
    for text in texts:
        full = pii._find(text, pii.KINDS)  # no prefilter
        assert pii.find(text) == full, text
        if not pii.maybe_pii(text):
            skipped += 1
            assert full == [], text
        for kind in pii.KINDS:  # and per kind, as --fail-on and callers with kinds use it
            if not pii.maybe_pii(text, (kind,)):
                assert pii._find(text, (kind,)) == [], (kind, text)
    assert skipped > 500  # the prefilter does skip most of these
    assert pii.find(NEAR_MISSES[0])[0].kind == "ssn"  # non-ASCII digits still reach the full scan


def test_prefilter_skips_ordinary_text():
    assert not pii.maybe_pii("The model learns to answer 12 questions about prices ($3.50) on 2023-04-05 at 10:30.")
    assert not pii.maybe_pii("Natalia sold 48 clips in April, and half as many in May. 48/2 = 24\nSo 72 in all.")
    assert not pii.maybe_pii("caf\u00e9 cr\u00e8me, 25 \u20ac \u2014 \u201cquoted\u201d")


def test_scan_records_matches_scan_record_across_groups():
    records = [{"messages": [{"role": "user", "content": f"question {i} costs $1{i}.50"},
                             {"role": "assistant", "content": "fine"}]} for i in range(70)]
    records[3]["messages"][1]["content"] = "mail jo@example.com"
    records[40] = {"prompt": ["x", {"y": "card 4111 1111 1111 1111"}], "completion": "ip 10.0.0.1", "n": 7}
    records[69] = "a bare string with 536-22-1234"
    records[20]["messages"][0]["content"] = "caf\u00e9 " + NEAR_MISSES[0]  # non-ASCII digits: looked for per record
    records[21]["messages"][0]["content"] = "caf\u00e9 12 \u20ac"  # non-ASCII, no digits of that kind
    found = pii.scan_records(records)
    assert sorted(found) == [3, 20, 40, 69]
    for i, record in enumerate(records):
        assert found.get(i, []) == pii.scan_record(record)
    assert [(field, f.kind) for field, f in found[40]] == [("prompt[1].y", "card"), ("completion", "ipv4")]
    assert pii.scan_records([]) == {} and pii.scan_records(records[:3]) == {}


def test_batched_data_checks_keep_problems_in_file_order(tmp_path, monkeypatch):
    """pii: block/redact/warn in forge.datafiles.load scan records in batches; problems, counts, kept records and
    the first record are what a record-by-record scan gives, across batch boundaries."""
    from forge import datafiles
    from forge.errors import DataError

    monkeypatch.setattr(datafiles, "PII_BATCH", 2)

    def chat(text):
        return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}

    rows = [chat("mail a@b.io"), chat("fine"), chat("card 4111 1111 1111 1111"), {"messages": [{"role": "wizard",
            "content": "x"}]}, chat("ssn 536-22-1234"), chat("fine again")]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as caught:
        datafiles.load(str(path), "sft", pii="block")
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in caught.value.problems] == ["1", "3", "4", "5"]
    assert "messages[0].content: card ****" in caught.value.problems[1]
    del rows[3]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = datafiles.load(str(path), "sft", pii="redact")
    assert [r["messages"][0]["content"] for r in loaded.records] == [
        "mail [EMAIL]", "fine", "card [CARD]", "ssn [SSN]", "fine again"]
    assert loaded.first == loaded.records[0] and loaded.pii == {"email": 1, "card": 1, "ssn": 1}
    checked = datafiles.load(str(path), "sft", keep=False, pii="warn")
    assert checked.records == [] and checked.count == 5 and checked.pii == loaded.pii
    assert checked.first == chat("mail a@b.io")


def forge(*args, cwd):
    return subprocess.run([sys.executable, "-m", "forge", *args], cwd=cwd, capture_output=True, text=True)


def test_scan_cli_lines_json_and_fail_on(tmp_path):
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "fine"}) + "\n" + json.dumps({"prompt": "x", "completion": "card 4111-1111-1111-1111"})
        + "\n\n" + json.dumps({"text": "mail jo@example.com"}) + "\n")
    result = forge("data", "scan", "d.jsonl", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["d.jsonl:2: completion: card ****-****-****-1111",
                                          "d.jsonl:4: text: email j*@e******.com"]
    assert "scanned 3 records in 1 file(s): 1 card, 1 email" in result.stderr
    report = json.loads(forge("data", "scan", "d.jsonl", "--json", cwd=tmp_path).stdout)
    assert report["counts"] == {"card": 1, "email": 1} and report["findings"][0]["where"] == "d.jsonl:2"
    failed = forge("data", "scan", "d.jsonl", "--fail-on", "card,secret", cwd=tmp_path)
    assert failed.returncode == 3 and "PII found: 1 card (--fail-on)" in failed.stderr
    assert forge("data", "scan", "d.jsonl", "--fail-on", "ssn", cwd=tmp_path).returncode == 0
    bad = forge("data", "scan", "d.jsonl", "--fail-on", "cards", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "forge: error: --fail-on: unknown PII kind 'cards' (kinds: email, phone, card, iban, ipv4, ipv6, ssn, "
        "secret, or all)")
    missing = forge("data", "scan", "nope.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == "forge: error: nope.jsonl: no such file"


def test_inspect_cli(tmp_path):
    rows = [{"instruction": "add", "input": "2 and 3", "output": "5"}] * 3 + [
        {"instruction": " ", "output": "x"}, {"instruction": "a", "output": "b"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    [report] = json.loads(forge("data", "inspect", "a.jsonl", "--json", cwd=tmp_path).stdout)
    assert report["format"] == "alpaca" and report["records"] == 5 and report["duplicates"] == 2
    assert report["fields"]["input"] == {"present": 3, "chars": {"min": 7, "mean": 7.0, "p95": 7, "max": 7}}
    assert report["problems"] == ["a.jsonl:4: field 'instruction' is empty"]
    text = forge("data", "inspect", "a.jsonl", cwd=tmp_path).stdout
    assert "a.jsonl: 5 records, format alpaca" in text and "exact duplicates: 2" in text
