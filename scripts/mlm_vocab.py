#!/usr/bin/env python3
"""The vocabulary of the shipped 1D encoder (models/transformer_mlm/vocab.txt).

Every atom-level regex token (the tokeniser of `anges-train`, trainer/src/featurize/tokens.rs)
of the pre-training corpus rows used, plus those of the MoleculeNet sets, so that fine-tuning
on them drops no molecule for an unknown token (a token never seen in pre-training starts from
its random embedding). Only the SMILES strings are read, never a label.

    scripts/mlm_vocab.py --corpus ../shared/datasets/corpora/moses_train.csv.gz --limit 300000 \
        --datasets ../shared/datasets/moleculenet > vocab.txt
"""
import argparse
import csv
import gzip
import pathlib
import re
import sys

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# The same pattern as SMILES_REGEX in trainer/src/featurize/tokens.rs.
REGEX = re.compile(
    r"(\[[^\]]+\]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)


def smiles_column(path, limit=None):
    """The SMILES of a CSV(.gz): the column named smiles (any case) or `mol` (BACE)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = csv.reader(f)
        header = [h.strip().lower() for h in next(rows)]
        col = next(i for i, h in enumerate(header) if h in ("smiles", "mol"))
        for n, row in enumerate(rows):
            if limit is not None and n >= limit:
                return
            if col < len(row) and row[col]:
                yield row[col]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=pathlib.Path, required=True)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--datasets", type=pathlib.Path, required=True)
    a = p.parse_args()
    seen = set()
    sources = [(a.corpus, a.limit)] + [
        (f, None) for f in sorted(a.datasets.iterdir()) if f.name.endswith((".csv", ".csv.gz"))
    ]
    for path, limit in sources:
        before = len(seen)
        for s in smiles_column(path, limit):
            seen.update(REGEX.findall(s))
        print(f"{path.name}: {len(seen) - before} new tokens", file=sys.stderr)
    for t in SPECIAL + sorted(seen - set(SPECIAL)):
        print(t)


if __name__ == "__main__":
    main()
