#!/usr/bin/env python3
"""Times the PyPI package `selfies` on the molecules of a CSV, for the featurisation benchmark
(trainer/benches/featurize.rs), which times ANGES's chem::selfies on the same molecules.

Usage: selfies_bench.py INPUT.csv[.gz] [--smiles-column NAME] [--limit N]

Prints one JSON object: {"selfies_version", "molecules", "encoded", "encode_wall_s",
"encode_cpu_s", "decode_wall_s", "decode_cpu_s"}. The SMILES are the column's cells stripped of
surrounding whitespace (as ANGES reads them); only the encoder and decoder loops are timed.
"""

import argparse
import csv
import gzip
import io
import json
import time
from importlib import metadata

import selfies as sf


def open_text(path):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--smiles-column", default=None, help="default: 'smiles', else 'mol'")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    with open_text(args.input) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        column = args.smiles_column or ("smiles" if "smiles" in header else "mol")
        col = header.index(column)
        smiles = [rec[col].strip() if col < len(rec) else "" for rec in reader]
    if args.limit is not None:
        smiles = smiles[: args.limit]

    encoded = []
    wall, cpu = time.perf_counter(), time.process_time()
    for s in smiles:
        try:
            encoded.append(sf.encoder(s))
        except Exception:  # noqa: BLE001 - a molecule SELFIES cannot express
            pass
    encode_wall, encode_cpu = time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = time.perf_counter(), time.process_time()
    for e in encoded:
        sf.decoder(e)
    decode_wall, decode_cpu = time.perf_counter() - wall, time.process_time() - cpu

    print(
        json.dumps(
            {
                "selfies_version": metadata.version("selfies"),
                "molecules": len(smiles),
                "encoded": len(encoded),
                "encode_wall_s": encode_wall,
                "encode_cpu_s": encode_cpu,
                "decode_wall_s": decode_wall,
                "decode_cpu_s": decode_cpu,
            }
        )
    )


if __name__ == "__main__":
    main()
