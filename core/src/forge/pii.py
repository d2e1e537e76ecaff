"""PII and secrets in text: well-tested validators over regex candidates, no model, no network.

Kinds: ``email``, ``phone``, ``card`` (Luhn-checked, known issuer prefixes), ``iban`` (mod-97 and the country's
length), ``ipv4``, ``ipv6`` (checked by :mod:`ipaddress`), ``ssn`` (US, invalid areas/groups excluded) and
``secret`` (cloud access keys, private-key blocks, bearer and API tokens). Numbers, dates and prices are not PII:
candidates need the shape of their kind (separators for phones, a checksum for cards and IBANs).

Speed: most text holds none of what a kind needs (an ``@``, eight digits and separators in a row, two capitals
before two digits, a long token...). :func:`maybe_pii` tests exactly those necessary conditions with
``bytes.translate`` and substring searches (no regex over ordinary text), and :func:`scan_records` tests a whole
batch of records at once, then halves of it, then records, so the patterns and validators run only on the few
strings that could hold a finding. Every string is still examined: no sampling.

    for finding in find("mail me at jo@example.com"):
        finding.kind, finding.masked()          # ('email', 'j*@e******.com')
    redact("card 4111 1111 1111 1111")           # 'card [CARD]'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KINDS = ("email", "phone", "card", "iban", "ipv4", "ipv6", "ssn", "secret")

# IBAN lengths by country (ISO 13616 registry; the countries a user is likely to meet)
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26,
    "UA": 29, "VG": 24, "XK": 20,
}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
# phones: international (+CC ...) or North American (NXX) NXX-XXXX with separators; bare digit runs are not phones
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}"
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])")
_WINDOW = re.compile(r"[+(]?\d[\d .()\-]{6,}\d")
_SECRET_HINTS = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "PRIVATE KEY", "Bearer", "gh", "AIza", "xox", "sk-", "hf_")
_IBAN_HINT = re.compile(r"[A-Z]{2}\d\d")
_DIGITS = re.compile(r"\d\d")
_SECRETS = [
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),  # PEM private key block
    re.compile(r"\bBearer\s+[A-Za-z0-9\-._~+/]{20,}=*"),  # HTTP bearer token
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),  # GitHub token
    re.compile(r"\bAIza[0-9A-Za-z\-_]{35}\b"),  # Google API key
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),  # Slack token
    re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b"),  # OpenAI-style secret key
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face token
]


_NUMERIC = {"ssn": _SSN, "ipv4": _IPV4, "phone": _PHONE}


# -- prefilter: conditions every finding of a kind needs, checked on bytes ------------------------------------------
# Each test is a *necessary* condition of a kind's pattern: when all are false for a text (or for many texts joined
# by "\n", which no needle contains), find() returns nothing for it. _SHAPE maps bytes to classes so that a
# pattern's shape becomes a plain substring search in C: digits → "0", capitals → "A", space, hyphen and dot → "s",
# parentheses → "p", "+" stays, the rest → "x" (a plain translate: half a nanosecond a byte; one that also deletes
# bytes is ten times slower). "AA00" is an IBAN's start; "s00s0000" the end of an SSN; a card number has seven
# digits in a row or two groups of 4-6 and more ("0000s00000s0"); a North American phone number "000s000s0000" or
# "p000s0000". Single characters are looked for first (memchr: tens of GB/s), longer needles only when those are
# there, and no regex that visits every position runs over ordinary text (the few regexes here start with a literal,
# which the engine searches for). Non-ASCII text is tested as UTF-8 (its bytes map to "x"), except that a non-ASCII
# decimal digit (which \d matches) sends the text to the full scan.

_SHAPE = bytearray(b"x" * 256)
for _chars, _code in (("0123456789", "0"), ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "A"), (" -.", "s"), ("+", "+"), ("()", "p")):
    for _ch in _chars:
        _SHAPE[ord(_ch)] = ord(_code)
_SHAPE_TABLE = bytes(_SHAPE)
_IPV4_HINT = re.compile(rb"\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")  # (?:\d{1,3}\.){3}\d{1,3} has this (a search for ".")
_IPV6_HINT = re.compile(rb":[0-9A-Fa-f]{0,4}:")  # an IPv6 candidate has two colons this close
_GITHUB_HINT = re.compile(rb"gh[pousr]_")
_PLUS_DIGIT = re.compile(rb"\+[0-9]")
_WORD_OR_PLUS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_+")
_NON_ASCII_DIGIT = re.compile(r"[^\x00-\x7f\D]")
_SHAPED = frozenset(("iban", "ipv6", "card", "ssn", "ipv4", "phone"))  # find() needs two digits in a row for these
_SEPARATED = frozenset(("card", "ssn", "phone"))  # kinds with four digits in a row


def _international_phone_start(raw: bytes) -> bool:
    """A "+" and a digit not after a word character or another "+" (_PHONE's first branch: ``(?<![\\w+])\\+\\d``;
    "12+4" in arithmetic is not one). A byte of a non-ASCII character before it counts as a possible start."""
    for match in _PLUS_DIGIT.finditer(raw):
        start = match.start()
        if start == 0 or raw[start - 1] not in _WORD_OR_PLUS:
            return True
    return False


def maybe_pii(text: str, kinds: tuple[str, ...] = KINDS, digits_checked: bool = False) -> bool:
    """False when :func:`find` certainly finds nothing in ``text`` (a few passes of C code over its bytes); True
    when it might. ``text`` may be many strings joined with newlines. ``digits_checked``: the caller knows that
    ``text`` holds no non-ASCII decimal digit (the one test here that is a regex over the text)."""
    if text.isascii():
        raw = text.encode("ascii")
    else:
        if not digits_checked and not _SHAPED.isdisjoint(kinds) and _NON_ASCII_DIGIT.search(text):
            return True
        raw = text.encode("utf-8", "surrogatepass")
    if "email" in kinds and b"@" in raw:
        return True
    shape = raw.translate(_SHAPE_TABLE)
    upper = b"A" in shape
    if "secret" in kinds and (
            (b"-" in raw and (b"-----" in raw or b"sk-" in raw or b"xox" in raw))  # PEM, OpenAI, Slack
            or (b"B" in raw and b"Bearer" in raw)
            or (upper and b"AA" in shape and (b"AAAA" in shape or b"AIza" in raw))  # AWS (AKIA...), Google (AIza...)
            or (b"_" in raw and (b"hf_" in raw or _GITHUB_HINT.search(raw) is not None))):  # Hugging Face, GitHub
        return True
    if b"0" not in shape or b"00" not in shape:  # find() looks for no other kind without two digits in a row
        return False
    if "iban" in kinds and upper and b"AA00" in shape:
        return True
    if "ipv6" in kinds and b":" in raw and _IPV6_HINT.search(raw) is not None:
        return True
    if not _SEPARATED.isdisjoint(kinds) and b"0000" in shape and (
            ("ssn" in kinds and b"s00s0000" in shape)  # 123-45-6789
            or ("card" in kinds and (b"0000000" in shape or b"0000s0000s0" in shape  # 13+ digits, or groups of 4-6
                                     or b"0000s00000s0" in shape or b"0000s000000s0" in shape))
            or ("phone" in kinds and (b"000s000s0000" in shape or b"p000s0000" in shape  # 415-555-0132, (415)555-0132
                                      or b"ps000s0000" in shape))):  # (415) 555-0132
        return True
    if "phone" in kinds and b"+" in raw and _international_phone_start(raw):
        return True
    return "ipv4" in kinds and b"0s0" in shape and _IPV4_HINT.search(raw) is not None


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str

    def masked(self) -> str:
        """The value with most characters hidden: enough to find it, not enough to use it."""
        return mask(self.kind, self.value)


def mask(kind: str, value: str) -> str:
    if kind == "email":
        user, _, domain = value.partition("@")
        host, _, tld = domain.rpartition(".")
        return f"{user[:1]}{'*' * (len(user) - 1)}@{host[:1]}{'*' * (len(host) - 1)}.{tld}"
    if kind == "secret":
        return value[:4] + "*" * min(12, max(0, len(value) - 4))
    keep = 4 if kind in ("card", "iban", "phone", "ssn") else 0
    hidden = "".join("*" if c.isalnum() else c for c in value[: len(value) - keep])
    return hidden + value[len(value) - keep:]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(raw: str) -> bool:
    digits = re.sub(r"[ -]", "", raw)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    if not re.match(r"4|5[1-5]|2[2-7]|3[47]|3[068]|6(?:011|5|4[4-9]|2)|35", digits):
        return False
    groups = re.split(r"[ -]", raw)  # separators, when used, split the number in groups of 4 (Amex: 4-6-5)
    if len(groups) > 1 and not all(len(g) in (4, 5, 6) for g in groups[:-1]):
        return False
    return luhn_ok(digits)


_CARD_LENGTHS = {n: re.compile(rf"(?:\d[ -]?){{{n - 1}}}\d(?!\d)") for n in range(13, 20)}
_NUMBER_START = re.compile(r"(?<!\d)\d")


def _cards(part: str) -> list[tuple[int, int]]:
    """Card numbers in a run of digits and separators: from each number's start, the lengths cards have (16
    first), checked; a price or an ISBN next to a card does not hide it."""
    found: list[tuple[int, int]] = []
    after = 0
    for start in (m.start() for m in _NUMBER_START.finditer(part)):
        if start < after or (start > 0 and part[start - 1] == "-" and start > 1 and part[start - 2].isdigit()):
            continue
        for n in (16, 15, 19, 18, 17, 14, 13):
            m = _CARD_LENGTHS[n].match(part, start)
            if m and _card_ok(m.group()):
                found.append((start, m.end()))
                after = m.end()
                break
    return found


def _iban_end(text: str, start: int, end: int) -> int | None:
    """Where the IBAN starting at ``start`` ends: after as many characters as its country's IBANs have (a word
    after it may have been swept into the candidate), checked with mod-97."""
    length = IBAN_LENGTHS.get(text[start:start + 2])
    if length is None:
        return None
    count, pos = 0, start
    while pos < end and count < length:
        if text[pos] != " ":
            count += 1
        pos += 1
    if count != length or (pos < len(text) and text[pos].isalnum()) or not iban_ok(text[start:pos]):
        return None
    return pos


def iban_ok(raw: str) -> bool:
    iban = raw.replace(" ", "").upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _ssn_ok(match: re.Match[str]) -> bool:
    area, group, serial = match.groups()
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _ipv4_ok(raw: str) -> bool:
    parts = raw.split(".")
    if any(len(p) > 1 and p.startswith("0") for p in parts):
        return False
    try:
        address = ipaddress.IPv4Address(raw)
    except ValueError:
        return False
    return not (address.is_unspecified or raw.endswith(".0.0"))


def _ipv6_ok(raw: str) -> bool:
    if raw.count(":") < 2 or sum(c.isalnum() for c in raw) < 3:
        return False
    try:
        ipaddress.IPv6Address(raw)
    except ValueError:
        return False
    return True


def _phone_ok(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 9 <= len(digits) <= 15 and len(set(digits)) > 2


_VALID = {"ssn": lambda m: _ssn_ok(m), "ipv4": lambda m: _ipv4_ok(m.group()), "phone": lambda m: _phone_ok(m.group())}


def find(text: str, kinds: tuple[str, ...] = KINDS) -> list[Finding]:
    """Every finding in ``text``, ordered by position; overlapping candidates keep the first, longest one."""
    if not maybe_pii(text, kinds):
        return []
    return _find(text, kinds)


def _find(text: str, kinds: tuple[str, ...]) -> list[Finding]:
    found: list[Finding] = []

    def add(kind: str, start: int, end: int) -> None:
        found.append(Finding(kind, start, end, text[start:end]))

    if "secret" in kinds and any(hint in text for hint in _SECRET_HINTS):
        for pattern in _SECRETS:
            for m in pattern.finditer(text):
                add("secret", m.start(), m.end())
    if "email" in kinds and "@" in text:
        for m in _EMAIL.finditer(text):
            add("email", m.start(), m.end())
    if not _DIGITS.search(text):  # every other kind has two digits in a row
        kinds = tuple(k for k in kinds if k == "email")
    if "iban" in kinds and _IBAN_HINT.search(text):
        for m in _IBAN.finditer(text):
            end = _iban_end(text, m.start(), m.end())
            if end is not None:
                add("iban", m.start(), end)
    if "ipv6" in kinds and ":" in text:
        for m in _IPV6.finditer(text):
            if _ipv6_ok(m.group()):
                add("ipv6", m.start(), m.end())
    numeric = [k for k in ("card", "ssn", "ipv4", "phone") if k in kinds]
    if numeric:
        # one cheap pass finds runs of digits and separators; the kinds' own patterns run only inside them
        for window in _WINDOW.finditer(text):
            lo, hi = max(0, window.start() - 1), min(len(text), window.end() + 1)
            part = text[lo:hi]
            for kind in numeric:
                if kind == "card":
                    for start, end in _cards(part):
                        add("card", lo + start, lo + end)
                    continue
                for m in _NUMERIC[kind].finditer(part):
                    if _VALID[kind](m):
                        add(kind, lo + m.start(), lo + m.end())
    kept: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if kept and finding.start < kept[-1].end:
            continue
        kept.append(finding)
    return kept


def redact(text: str, kinds: tuple[str, ...] = KINDS) -> str:
    """``text`` with every finding replaced by ``[KIND]``."""
    out, last = [], 0
    for finding in find(text, kinds):
        out.append(text[last:finding.start])
        out.append(f"[{finding.kind.upper()}]")
        last = finding.end
    out.append(text[last:])
    return "".join(out)


def strings(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) for every string inside a record: ``messages[1].content``, ``text``..."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from strings(item, f"{field}[{i}]")


def _collect(value: Any, out: list[str]) -> None:
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (dict, list, tuple)):
            _collect(item, out)


def record_text(record: Any) -> str:
    """Every string inside a record joined with newlines: what :func:`maybe_pii` tests for a whole record (the
    usual shapes, a dict of strings and lists of message dicts, without a call per value)."""
    if isinstance(record, str):
        return record
    parts: list[str] = []
    append = parts.append
    for value in record.values() if isinstance(record, dict) else record if isinstance(record, (list, tuple)) else ():
        if isinstance(value, str):
            append(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    for text in item.values():
                        if isinstance(text, str):
                            append(text)
                        elif isinstance(text, (dict, list, tuple)):
                            _collect(text, parts)
                elif isinstance(item, str):
                    append(item)
                elif isinstance(item, (list, tuple)):
                    _collect(item, parts)
        elif isinstance(value, (dict, tuple)):
            _collect(value, parts)
    return "\n".join(parts)


def scan_record(record: Any, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, Finding]]:
    """(field, finding) for every finding in a record's strings."""
    if not maybe_pii(record_text(record), kinds):
        return []
    return [(field, f) for field, text in strings(record) for f in find(text, kinds)]


_GROUP = 16  # records tested together once their batch might hold PII


def scan_records(records: list[Any], kinds: tuple[str, ...] = KINDS,
                 texts: list[str] | None = None) -> dict[int, list[tuple[str, Finding]]]:
    """:func:`scan_record` for many records at once, by index, only the records with findings. The batch is tested
    with one :func:`maybe_pii`, then groups of 16 records, then single records, so clean data costs a few passes of C
    code over its bytes; every string that might hold a finding goes through :func:`find`. ``texts``: each record's
    :func:`record_text`, or a text holding every string of the record that could hold a finding, when the caller
    has it cheaper."""
    found: dict[int, list[tuple[str, Finding]]] = {}
    if texts is None:
        texts = [record_text(r) for r in records]
    # non-ASCII decimal digits are looked for once, in the non-ASCII texts only; those that have them are scanned
    unicode_digits = set() if _SHAPED.isdisjoint(kinds) else {
        i for i, t in enumerate(texts) if not t.isascii() and _NON_ASCII_DIGIT.search(t)}
    if not records or (not unicode_digits and not maybe_pii("\n".join(texts), kinds, digits_checked=True)):
        return found
    for lo in range(0, len(records), _GROUP):
        hi = min(lo + _GROUP, len(records))
        if hi - lo > 1 and unicode_digits.isdisjoint(range(lo, hi)) and not maybe_pii(
                "\n".join(texts[lo:hi]), kinds, digits_checked=True):
            continue
        for i in range(lo, hi):
            if i in unicode_digits or maybe_pii(texts[i], kinds, digits_checked=True):
                findings = [(field, f) for field, text in strings(records[i]) for f in find(text, kinds)]
                if findings:
                    found[i] = findings
    return found


def redact_record(value: Any, kinds: tuple[str, ...] = KINDS) -> Any:
    """A copy of a record with every string redacted."""
    if isinstance(value, str):
        return redact(value, kinds)
    if isinstance(value, dict):
        return {k: redact_record(v, kinds) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_record(v, kinds) for v in value]
    return value


def parse_kinds(text: str) -> tuple[str, ...]:
    """``email,card`` → ('email', 'card'); ``all`` → every kind; an unknown kind raises ValueError."""
    names = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    if names == ("all",):
        return KINDS
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown PII kind {unknown[0]!r} (kinds: {', '.join(KINDS)}, or all)")
    return names
