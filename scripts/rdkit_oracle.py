#!/usr/bin/env python3
"""RDKit oracle for the trainer's chemistry parity tests.

For every row of a MoleculeNet-style CSV (.csv or .csv.gz) this writes what RDKit computes:
the pretrain-gnns graph features (Hu et al., `mol_to_graph_data_obj_simple`), the edge list, the
Bemis-Murcko scaffold (`MurckoScaffoldSmiles(includeChirality=True)`), and the reference scaffold
split of Hu et al. (`splitters.scaffold_split`, 80/10/10) over the rows that produced a graph.

Usage: rdkit_oracle.py INPUT.csv[.gz] OUTPUT.json [--smiles-column NAME]

Output (one JSON object):
  {"rdkit_version": "...", "rows": [ROW, ...], "scaffold_split": {"train": [...], "valid": [...],
   "test": [...]}}
  ROW = {"row": i, "status": "ok" | "parse_error" | "empty" | "unsupported", "reason": "...",
         "x": [z-1, chirality, ...] (flat [n_atoms, 2]),
         "edge_index": [src..., dst...] (flat [2, 2*n_bonds]),
         "edge_attr": [type, dir, ...] (flat [2*n_bonds, 2]),
         "scaffold": "..." (present whenever RDKit parsed the molecule)}
Row indices are 0-based data rows (the header is not a row).
"""

import argparse
import csv
import gzip
import io
import json
import sys

from rdkit import Chem, RDLogger, rdBase
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")

# pretrain-gnns `allowable_features` (loader.py).
CHIRALITY = [
    Chem.rdchem.ChiralType.CHI_UNSPECIFIED,
    Chem.rdchem.ChiralType.CHI_TETRAHEDRAL_CW,
    Chem.rdchem.ChiralType.CHI_TETRAHEDRAL_CCW,
    Chem.rdchem.ChiralType.CHI_OTHER,
]
BOND_TYPES = [
    Chem.rdchem.BondType.SINGLE,
    Chem.rdchem.BondType.DOUBLE,
    Chem.rdchem.BondType.TRIPLE,
    Chem.rdchem.BondType.AROMATIC,
]
BOND_DIRS = [
    Chem.rdchem.BondDir.NONE,
    Chem.rdchem.BondDir.ENDUPRIGHT,
    Chem.rdchem.BondDir.ENDDOWNRIGHT,
]


def open_text(path):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def featurise(mol):
    """pretrain-gnns features; raises ValueError (as pretrain-gnns' list.index does) if unsupported."""
    x = []
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        if not 1 <= z <= 118:
            raise ValueError(f"atomic number {z}")
        tag = atom.GetChiralTag()
        if tag not in CHIRALITY:
            raise ValueError(f"chiral tag {tag}")
        x += [z - 1, CHIRALITY.index(tag)]
    src, dst, attr = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if bond.GetBondType() not in BOND_TYPES:
            raise ValueError(f"bond type {bond.GetBondType()}")
        if bond.GetBondDir() not in BOND_DIRS:
            raise ValueError(f"bond direction {bond.GetBondDir()}")
        feat = [BOND_TYPES.index(bond.GetBondType()), BOND_DIRS.index(bond.GetBondDir())]
        src += [i, j]
        dst += [j, i]
        attr += feat + feat
    return x, src + dst, attr


def scaffold_split(kept, frac_train=0.8, frac_valid=0.1):
    """splitters.scaffold_split of pretrain-gnns, on (row, scaffold) pairs in row order."""
    groups = {}
    for row, scaffold in kept:
        groups.setdefault(scaffold, []).append(row)
    groups = {k: sorted(v) for k, v in groups.items()}
    sets = [
        s
        for (_, s) in sorted(groups.items(), key=lambda kv: (len(kv[1]), kv[1][0]), reverse=True)
    ]
    train_cutoff = frac_train * len(kept)
    valid_cutoff = (frac_train + frac_valid) * len(kept)
    train, valid, test = [], [], []
    for s in sets:
        if len(train) + len(s) > train_cutoff:
            if len(train) + len(valid) + len(s) > valid_cutoff:
                test.extend(s)
            else:
                valid.extend(s)
        else:
            train.extend(s)
    return {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--smiles-column", default=None, help="default: 'smiles', else 'mol'")
    args = ap.parse_args()

    with open_text(args.input) as fh:
        reader = csv.reader(fh)
        header = next(reader)
        column = args.smiles_column or ("smiles" if "smiles" in header else "mol")
        col = header.index(column)
        smiles_list = [rec[col] for rec in reader]

    rows, kept = [], []
    for i, smiles in enumerate(smiles_list):
        out = {"row": i}
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            out["status"] = "parse_error"
            rows.append(out)
            continue
        out["scaffold"] = MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=True)
        if mol.GetNumAtoms() == 0:
            out["status"] = "empty"
        else:
            try:
                out["x"], out["edge_index"], out["edge_attr"] = featurise(mol)
                out["status"] = "ok"
                kept.append((i, out["scaffold"]))
            except ValueError as err:
                out["status"] = "unsupported"
                out["reason"] = str(err)
        rows.append(out)

    result = {
        "rdkit_version": rdBase.rdkitVersion,
        "rows": rows,
        "scaffold_split": scaffold_split(kept),
    }
    # json.dumps, not json.dump: dump streams through the pure-Python encoder, a third of this
    # script's time on HIV; dumps encodes in C. The bytes written are the same.
    with open(args.output, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(result, separators=(",", ":")))
    print(
        f"{args.input}: {len(rows)} rows, {len(kept)} featurised, "
        f"{sum(r['status'] == 'parse_error' for r in rows)} RDKit parse errors",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
