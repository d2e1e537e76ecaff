"""The PII scanner against an earlier version of itself: every finding must be the same (the prefilter and the
batched scan are speed-ups, not changes). Texts: the planted corpora of bench/pii_scan.py (two seeds), the clean
shared samples, and generated near-misses made of the characters and fragments the patterns look for.

    git show ac92a9c:core/src/forge/pii.py > /tmp/pii_old.py
    python bench/pii_differential.py --old /tmp/pii_old.py [--generated 200000]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pii_scan
from forge import pii

FRAGMENTS = ["@", "a@b.io", ":", "::", "1", "12", "2001:db8::1", "-", "_", " ", ".", "(", ")", "+", "+44", "AKIA",
             "ghp_", "hf_", "sk-", "xox", "xoxb-", "Bearer ", "PRIVATE KEY", "-----BEGIN ", "-----", "GB", "DE89", "NL",
             "\u0664", "\u0661\u0662\u0663", "\u0660-\u0665", "\u00e9", "\n", "x", "Ab", "ZZ", "AIza", "4111", "1111",
             "555-0132", "(415)", "192.168.", "0.", "abcdefghij", "KLMNOPQRST", "0123456789", "\ud800",
             "\u0663\u0664\u0665-\u0662\u0662-\u0661\u0662\u0663\u0664", "fe80::", "a:b:c", "1:2:3:4:5", "3782 ",
             "822463", "10005"]


def texts(generated: int) -> list[str]:
    out = [t for t, _ in pii_scan.corpus(5000, 0)] + [t for t, _ in pii_scan.corpus(3000, 7)]
    for sample in pii_scan.clean_texts().values():
        out += sample
    rng = random.Random(1)
    for _ in range(generated):
        out.append("".join(rng.choice(FRAGMENTS) if rng.random() < 0.7 else rng.choice("0123456789 .-:@ABCxyz_()+")
                           for _ in range(rng.randint(1, 12))))
    for alphabet in ("0123456789 .-()+:", "0123456789ABCDEFabcdef: ", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-abcxyz"):
        for _ in range(generated // 7):
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(5, 40))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="an earlier forge/pii.py")
    parser.add_argument("--generated", type=int, default=200_000)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("pii_old", args.old)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules["pii_old"] = old
    spec.loader.exec_module(old)

    def key(findings: list) -> list:
        return [(f.kind, f.start, f.end, f.value) for f in findings]

    corpus = texts(args.generated)
    differ = 0
    for kinds in [pii.KINDS] + [(k,) for k in pii.KINDS]:
        for text in corpus if kinds == pii.KINDS else corpus[::5]:
            if key(old.find(text, kinds)) != key(pii.find(text, kinds)):
                differ += 1
                if differ <= 10:
                    print(f"DIFFERENT for {kinds}: {text!r}")
    records = [{"messages": [{"role": "user", "content": corpus[i]}, {"role": "assistant", "content": corpus[i + 1]}],
                "x": [corpus[i + 2], 5, None]} for i in range(0, len(corpus) - 3, 3)]
    batched: dict[int, list] = {}
    for start in range(0, len(records), 256):
        batched.update((start + i, f) for i, f in pii.scan_records(records[start:start + 256]).items())
    for i, record in enumerate(records):
        want = [(field, *key([f])) for field, f in old.scan_record(record)]
        if want != [(field, *key([f])) for field, f in batched.get(i, [])]:
            differ += 1
    with_findings = sum(1 for t in corpus if old.find(t))
    print(f"{len(corpus):,} texts ({with_findings:,} with findings), each kind alone on a fifth of them, "
          f"{len(records):,} records in batches: {differ} differences")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
