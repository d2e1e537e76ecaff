"""forge.pii precision/recall on a generated corpus with planted PII, and false positives on clean real data.

    python bench/pii_scan.py [--records 5000] [--seed 0]

Planted corpus: each record is a sentence with 0-2 planted values (every kind, with valid checksums), mixed with
"hard negatives" that look like PII but are not (Luhn-failing 16-digit numbers, IBANs with a wrong check, prices,
dates, times, version strings, order numbers, invalid SSN areas). A finding counts as a true positive when its kind
and exact value match a planted one in the same record. Clean data: the GSM8K and SST-2 samples in ../shared/data
(read by path), where every finding is a false positive. Also the scan throughput (MB/s) on the planted corpus.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import string
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA
from forge import pii


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if pii.luhn_ok(body + check):
            return body + check
    raise AssertionError


def iban(country: str, length: int, rng: random.Random) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def planted(kind: str, rng: random.Random) -> str:
    if kind == "email":
        user = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))
        return f"{user}{rng.choice(['', '.x', '+news', '_1'])}@{rng.choice(['example.com', 'mail.co.uk', 'corp.io'])}"
    if kind == "phone":
        return rng.choice([f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                           f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                           f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                           f"+49 30 {rng.randint(100000, 999999)}9"])
    if kind == "card":
        number = luhn_complete(rng.choice(["4", "51", "55", "22"]), 16, rng)
        sep = rng.choice(["", " ", "-"])
        return sep.join(number[i:i + 4] for i in range(0, 16, 4))
    if kind == "iban":
        value = iban(*rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24)]), rng)
        if value.startswith("GB") or value.startswith("NL"):
            value = value[:4] + value[4:]
        return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value
    if kind == "ipv4":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    if kind == "ipv6":
        return "2001:db8:" + ":".join(f"{rng.randint(1, 0xffff):x}" for _ in range(6))
    if kind == "ssn":
        return f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if kind == "secret":
        return rng.choice([
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36)),
            "-----BEGIN RSA PRIVATE KEY-----"])
    raise ValueError(kind)


def negative(rng: random.Random) -> str:
    bad_card = luhn_complete("4", 16, rng)
    bad_card = bad_card[:-1] + str((int(bad_card[-1]) + 1) % 10)
    good = iban("DE", 22, rng)
    return rng.choice([
        f"order {bad_card} shipped",
        f"account {good[:2]}{(int(good[2:4]) + 1) % 100:02d}{good[4:]} (typo)",
        f"it costs ${rng.randint(1, 9999)}.{rng.randint(10, 99)}",
        f"on {rng.randint(1990, 2030)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        f"at {rng.randint(0, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}",
        f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        f"ssn-like 9{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        f"{rng.randint(1000, 99999):,} people, {rng.random() * 100:.1f}% of them",
        f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
        f"score {rng.randint(0, 30)}-{rng.randint(0, 30)}",
        f"ratio {rng.randint(1, 9)}:{rng.randint(1, 9)}",
    ])


TEMPLATES = ["Please contact {} about the invoice.", "my details: {}", "The value was {}, see above.",
             "{} was in the log", "Send it to {} tomorrow"]


def corpus(n: int, seed: int) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts, truth = [], []
        for _ in range(rng.choice([0, 1, 1, 2])):
            kind = rng.choice(pii.KINDS)
            value = planted(kind, rng)
            truth.append((kind, value))
            parts.append(rng.choice(TEMPLATES).format(value))
        for _ in range(rng.randint(1, 2)):
            parts.append(negative(rng))
        rng.shuffle(parts)
        out.append((" ".join(parts), truth))
    return out


def clean_texts() -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    gsm = SHARED_DATA / "instruct_sample.jsonl"
    if gsm.exists():
        texts["GSM8K sample (1,000 chats)"] = [m["content"] for line in gsm.read_text().splitlines() if line.strip()
                                               for m in json.loads(line)["messages"]]
    sst = SHARED_DATA / "sentiment_train.csv"
    if sst.exists():
        with sst.open(newline="") as handle:
            texts["SST-2 sample (5,000 sentences)"] = [row["text"] for row in csv.DictReader(handle)]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = corpus(args.records, args.seed)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    start = time.perf_counter()
    found_all = [pii.find(text) for text, _ in data]
    seconds = time.perf_counter() - start
    megabytes = sum(len(t.encode()) for t, _ in data) / 1e6
    for (_text, truth), found in zip(data, found_all, strict=True):
        expected = Counter(truth)
        got = Counter((f.kind, f.value) for f in found)
        for item, n in got.items():
            hit = min(n, expected.get(item, 0))
            tp[item[0]] += hit
            fp[item[0]] += n - hit
        for item, n in expected.items():
            fn[item[0]] += n - min(n, got.get(item, 0))
    print(f"planted corpus: {args.records:,} records, {sum(tp.values()) + sum(fn.values()):,} planted values, "
          f"{megabytes:.2f} MB scanned at {megabytes / seconds:.1f} MB/s\n")
    print("| kind | planted | found (TP) | false positives | precision | recall |")
    print("|---|---|---|---|---|---|")
    for kind in pii.KINDS:
        planted_n = tp[kind] + fn[kind]
        precision = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else float("nan")
        recall = tp[kind] / planted_n if planted_n else float("nan")
        print(f"| {kind} | {planted_n} | {tp[kind]} | {fp[kind]} | {precision:.3f} | {recall:.3f} |")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    print(f"| all | {total_tp + total_fn} | {total_tp} | {total_fp} | {total_tp / (total_tp + total_fp):.3f} | "
          f"{total_tp / (total_tp + total_fn):.3f} |\n")
    print("| clean data (../shared/data) | texts | findings (all false positives) | by kind | MB/s, find() per text "
          "| MB/s, scan_records (batches of 256, as data checks) |")
    print("|---|---|---|---|---|---|")
    for name, texts in clean_texts().items():
        megabytes = sum(len(t.encode()) for t in texts) / 1e6
        start = time.perf_counter()
        found = [f for t in texts for f in pii.find(t)]
        rate = megabytes / (time.perf_counter() - start)
        start = time.perf_counter()
        batched = [hit for i in range(0, len(texts), 256) for hit in pii.scan_records(texts[i:i + 256]).values()]
        batch_rate = megabytes / (time.perf_counter() - start)
        assert sum(map(len, batched)) == len(found)
        kinds = Counter(f.kind for f in found)
        print(f"| {name} | {len(texts):,} | {len(found)} | {dict(kinds) or '-'} | {rate:.1f} | {batch_rate:.1f} |")
        for f in found[:5]:
            print(f"    e.g. {f.kind}: {f.value!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
