#!/usr/bin/env python3
"""SELFIES oracle for the trainer's SELFIES parity tests.

For every row of a MoleculeNet-style CSV (.csv or .csv.gz) this writes what the PyPI package
`selfies` computes for the row's SMILES (stripped of surrounding whitespace, as ANGES reads it):
`selfies.encoder(smiles)` (strict, default semantic constraints), and for an encoded row
`selfies.decoder()` of that string; with RDKit, whether the package's own round trip keeps the
molecule (canonical SMILES of the input and of the decoded string equal).

Usage: selfies_oracle.py INPUT.csv[.gz] OUTPUT.json [--smiles-column NAME]

Output (one JSON object):
  {"selfies_version": "2.2.0", "rdkit_version": "...", "rows": [ROW, ...]}
  ROW = {"row": i, "smiles": "...", "selfies": "..." | null,
         "error": null | "EncoderError: failed to parse input" | ...,
         "decoded": "..." (encoded rows), "roundtrip": true | false | null (null: RDKit cannot
         read the input)}
Row indices are 0-based data rows (the header is not a row).
"""

import argparse
import csv
import gzip
import io
import json
import sys
from importlib import metadata

import selfies as sf
from rdkit import Chem, RDLogger, rdBase

RDLogger.DisableLog("rdApp.*")

# The version whose semantics chem::selfies implements (the default constraints changed in 2.2).
PINNED = "2.2.0"


def open_text(path):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def canonical(smiles):
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--smiles-column", default=None, help="default: 'smiles', else 'mol'")
    args = ap.parse_args()

    version = metadata.version("selfies")
    if version != PINNED:
        sys.exit(f"selfies {version} is installed, the parity tests need {PINNED}: run scripts/setup")

    with open_text(args.input) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        column = args.smiles_column or ("smiles" if "smiles" in header else "mol")
        col = header.index(column)
        smiles_list = [rec[col].strip() if col < len(rec) else "" for rec in reader]

    rows = []
    for i, smiles in enumerate(smiles_list):
        out = {"row": i, "smiles": smiles, "selfies": None, "error": None}
        try:
            out["selfies"] = sf.encoder(smiles)
        except Exception as err:  # the package raises more than EncoderError (KeyError, …)
            out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if out["selfies"] is not None:
            try:
                out["decoded"] = sf.decoder(out["selfies"])
            except Exception as err:
                out["decoded"] = None
                out["error"] = f"decoder {type(err).__name__}: {err}"
            want = canonical(smiles)
            got = canonical(out["decoded"]) if out.get("decoded") is not None else None
            out["roundtrip"] = None if want is None else (want == got)
        rows.append(out)

    result = {"selfies_version": version, "rdkit_version": rdBase.rdkitVersion, "rows": rows}
    with open(args.output, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(result, separators=(",", ":")))
    print(
        f"{args.input}: {len(rows)} rows, {sum(r['selfies'] is not None for r in rows)} encoded",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
