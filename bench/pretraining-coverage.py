#!/usr/bin/env python3
"""bench/pretraining-coverage.py RUNS_DIR — test ROC-AUC of the runs' best weights on the test molecules whose SMILES hold only tokens of
the pre-training corpus (MOSES) and on the others (docs/results.md, "Does pre-training help?")."""
import csv, glob, re, sys
R = re.compile(r"(\[[^\]]+\]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])")
MOSES = set("# ( ) - 1 2 3 4 5 6 = Br C Cl F N O S [H] [nH] c n o s".split())
def auc(y, p):
    pos = [q for t, q in zip(y, p) if t == 1]; neg = [q for t, q in zip(y, p) if t == 0]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / len(pos) / len(neg)
runs = sys.argv[1]
print("| dataset | runs of | seeds | test ROC-AUC, molecules with MOSES tokens only | the other molecules |")
print("|---|---|---|---|---|")
for ds, col in [("bace", "Class"), ("bbbp", "p_np")]:
    for init in ["gin-anges", "gin-random", "gcn-supervised-contextpred", "gcn-random", "transformer-anges", "transformer-random"]:
        ins, outs = [], []
        for f in sorted(glob.glob(f"{runs}/{ds}-{init}-s*/test_predictions.csv")):
            rows = list(csv.DictReader(open(f)))
            known = lambda r: all(t in MOSES for t in R.findall(r["smiles"]))
            g = lambda rs: auc([int(float(r[col])) for r in rs], [float(r[col + "_pred"]) for r in rs])
            ins.append(g([r for r in rows if known(r)])); outs.append(g([r for r in rows if not known(r)]))
            n_in, n_out = sum(map(known, rows)), sum(not known(r) for r in rows)
        m = lambda v: f"{100 * sum(v) / len(v):.1f}" if v else "-"
        print(f"| {ds} | {init} | {len(ins)} | {m(ins)} (n={n_in}) | {m(outs)} (n={n_out}) |")
