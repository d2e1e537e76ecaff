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
