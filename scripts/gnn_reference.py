#!/usr/bin/env python3
"""Reference implementation of SPEC §4 (pretrain-gnns GIN/GCN/GraphSAGE/GAT) in plain PyTorch, used as the
oracle of the Rust 2D models (trainer/tests/integration/gnn_parity.rs, trainer/benches/gnn_epoch.rs).

No torch_geometric: message passing is written with index_add_. Featurisation follows
pretrain-gnns' `mol_to_graph_data_obj_simple` with the venv's RDKit.

Modes (all write into --out):
  parity  featurise the first N valid SIDER molecules -> graphs.json; GCN embeddings (eval mode)
          from --gcn-checkpoint, as pretrain-gnns' GCNConv -> gcn_emb.npy and with SPEC §4's row
          L2 normalisation -> gcn_l2_emb.npy; a random GIN (seeded, random batch-norm
          statistics) saved as gin_random.pt (zip), gin_random_legacy.pth (legacy) and
          gin_random.safetensors, with its embeddings -> gin_emb.npy; node embeddings (eval mode,
          graphs concatenated in order) of the GraphSAGE of --graphsage-checkpoint ->
          graphsage_nodes.npy and of the GAT of --gat-checkpoint -> gat_nodes.npy.

GraphSAGE and GAT are written in torch_geometric 1.0's convention, which pretrain-gnns ran on:
for an edge column (i, j) of edge_index, x_i = x[i] is the atom that aggregates, x_j = x[j] the
neighbour, and sums, means and softmaxes are taken over the edges that share i (edge_index[0]).
GIN and GCN above aggregate at edge_index[1]; molecular graphs are symmetric, so both agree.
  graphs  featurise every valid molecule of --csv -> graphs.json (benchmark input).
"""
import argparse
import csv
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")

NUM_ATOM_TYPE = 120
NUM_CHIRALITY = 3
NUM_BOND_TYPE = 6
NUM_BOND_DIR = 3
SELF_LOOP_TYPE = 4

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


def featurise(smiles):
    """SPEC §4 graph of one SMILES, or None when RDKit rejects it or a feature is out of range."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    try:
        atoms = [
            [a.GetAtomicNum() - 1, CHIRALITY.index(a.GetChiralTag())] for a in mol.GetAtoms()
        ]
        edges, attrs = [], []
        for b in mol.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            feat = [BOND_TYPES.index(b.GetBondType()), BOND_DIRS.index(b.GetBondDir())]
            edges += [[i, j], [j, i]]
            attrs += [feat, feat]
    except ValueError:
        return None
    if any(a[0] < 0 or a[0] >= NUM_ATOM_TYPE or a[1] >= NUM_CHIRALITY for a in atoms):
        return None
    return {"smiles": smiles, "atoms": atoms, "edges": edges, "edge_attr": attrs}


def read_graphs(path, limit):
    graphs, skipped = [], 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        col = header.index("mol") if "mol" in header else header.index("smiles")
        for row in reader:
            g = featurise(row[col])
            if g is None:
                skipped += 1
                continue
            graphs.append(g)
            if limit and len(graphs) >= limit:
                break
    return graphs, skipped


class Layer(torch.nn.Module):
    def __init__(self, kind, d, gcn_l2=False):
        super().__init__()
        self.kind = kind
        self.gcn_l2 = gcn_l2
        if kind == "gin":
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(d, 2 * d), torch.nn.ReLU(), torch.nn.Linear(2 * d, d)
            )
        else:
            self.linear = torch.nn.Linear(d, d)
        self.edge_embedding1 = torch.nn.Embedding(NUM_BOND_TYPE, d)
        self.edge_embedding2 = torch.nn.Embedding(NUM_BOND_DIR, d)
        torch.nn.init.xavier_uniform_(self.edge_embedding1.weight.data)
        torch.nn.init.xavier_uniform_(self.edge_embedding2.weight.data)

    def forward(self, x, edge_index, edge_attr):
        n = x.size(0)
        loops = torch.arange(n, dtype=torch.long)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        loop_attr = torch.zeros(n, 2, dtype=torch.long)
        loop_attr[:, 0] = SELF_LOOP_TYPE
        ea = torch.cat([edge_attr, loop_attr], dim=0)
        e = self.edge_embedding1(ea[:, 0]) + self.edge_embedding2(ea[:, 1])
        src, dst = ei[0], ei[1]
        if self.kind == "gin":
            msg = x[src] + e
            out = torch.zeros(n, x.size(1), dtype=x.dtype).index_add_(0, dst, msg)
            return self.mlp(out)
        deg = torch.zeros(n, dtype=x.dtype).index_add_(0, src, torch.ones(src.size(0)))
        dis = deg.pow(-0.5)
        dis[torch.isinf(dis)] = 0
        norm = dis[src] * dis[dst]
        h = self.linear(x)
        msg = norm.view(-1, 1) * (h[src] + e)
        out = torch.zeros(n, h.size(1), dtype=h.dtype).index_add_(0, dst, msg)
        # SPEC §4 writes a row L2 normalisation here; pretrain-gnns' GCNConv has none.
        return F.normalize(out, p=2, dim=-1) if self.gcn_l2 else out


def with_self_loops(edge_index, edge_attr, n):
    """Appends one self-loop per atom, bond type 4 and direction 0 (pretrain-gnns)."""
    loops = torch.arange(n, dtype=torch.long)
    ei = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
    loop_attr = torch.zeros(n, 2, dtype=torch.long)
    loop_attr[:, 0] = SELF_LOOP_TYPE
    return ei, torch.cat([edge_attr, loop_attr], dim=0)


class SageLayer(torch.nn.Module):
    """GraphSAGE of pretrain-gnns: linear; mean over the edges at i (self-loop included) of
    h_j + e_ij; rows L2-normalised (F.normalize, eps 1e-12)."""

    def __init__(self, d):
        super().__init__()
        self.linear = torch.nn.Linear(d, d)
        self.edge_embedding1 = torch.nn.Embedding(NUM_BOND_TYPE, d)
        self.edge_embedding2 = torch.nn.Embedding(NUM_BOND_DIR, d)

    def forward(self, x, edge_index, edge_attr):
        n = x.size(0)
        ei, ea = with_self_loops(edge_index, edge_attr, n)
        e = self.edge_embedding1(ea[:, 0]) + self.edge_embedding2(ea[:, 1])
        h = self.linear(x)
        i, j = ei[0], ei[1]
        total = torch.zeros(n, h.size(1), dtype=h.dtype).index_add_(0, i, h[j] + e)
        count = torch.zeros(n, dtype=h.dtype).index_add_(0, i, torch.ones(i.size(0), dtype=h.dtype))
        return F.normalize(total / count.clamp(min=1).view(-1, 1), p=2, dim=-1)


class GatLayer(torch.nn.Module):
    """GAT of pretrain-gnns: h = weight_linear(x) as [heads, d]; per edge m = h_j + e_ij (edge
    embeddings heads*d wide), score = leaky_relu(<att[:, :d], h_i> + <att[:, d:], m>, 0.2),
    softmax over the edges at i (max-shifted, +1e-16), sum of score * m, mean over heads, + bias."""

    def __init__(self, d, heads=2, negative_slope=0.2):
        super().__init__()
        self.d, self.heads, self.slope = d, heads, negative_slope
        self.weight_linear = torch.nn.Linear(d, heads * d)
        self.att = torch.nn.Parameter(torch.empty(1, heads, 2 * d))
        self.bias = torch.nn.Parameter(torch.zeros(d))
        self.edge_embedding1 = torch.nn.Embedding(NUM_BOND_TYPE, heads * d)
        self.edge_embedding2 = torch.nn.Embedding(NUM_BOND_DIR, heads * d)
        torch.nn.init.xavier_uniform_(self.att)

    def forward(self, x, edge_index, edge_attr):
        n, hd, d = x.size(0), self.heads, self.d
        ei, ea = with_self_loops(edge_index, edge_attr, n)
        e = (self.edge_embedding1(ea[:, 0]) + self.edge_embedding2(ea[:, 1])).view(-1, hd, d)
        h = self.weight_linear(x).view(n, hd, d)
        i, j = ei[0], ei[1]
        m = h[j] + e
        score = (torch.cat([h[i], m], dim=-1) * self.att).sum(dim=-1)
        score = F.leaky_relu(score, self.slope)
        top = torch.full((n, hd), -math.inf, dtype=score.dtype).scatter_reduce(
            0, i.view(-1, 1).expand(-1, hd), score, reduce="amax", include_self=False
        )
        w = (score - top[i]).exp()
        total = torch.zeros(n, hd, dtype=w.dtype).index_add_(0, i, w)
        alpha = w / (total[i] + 1e-16)
        out = torch.zeros(n, hd, d, dtype=m.dtype).index_add_(0, i, m * alpha.unsqueeze(-1))
        return out.mean(dim=1) + self.bias


class Encoder(torch.nn.Module):
    """SPEC §4 encoder: keys match the pretrain-gnns checkpoints exactly."""

    def __init__(self, kind, num_layers=5, d=300, drop=0.5, gcn_l2=False):
        super().__init__()
        self.drop = drop
        self.x_embedding1 = torch.nn.Embedding(NUM_ATOM_TYPE, d)
        self.x_embedding2 = torch.nn.Embedding(NUM_CHIRALITY, d)
        torch.nn.init.xavier_uniform_(self.x_embedding1.weight.data)
        torch.nn.init.xavier_uniform_(self.x_embedding2.weight.data)
        def layer():
            if kind == "graphsage":
                return SageLayer(d)
            if kind == "gat":
                return GatLayer(d)
            return Layer(kind, d, gcn_l2)

        self.gnns = torch.nn.ModuleList([layer() for _ in range(num_layers)])
        self.batch_norms = torch.nn.ModuleList([torch.nn.BatchNorm1d(d) for _ in range(num_layers)])

    def forward(self, x, edge_index, edge_attr):
        h = self.x_embedding1(x[:, 0]) + self.x_embedding2(x[:, 1])
        last = len(self.gnns) - 1
        for i, (gnn, bn) in enumerate(zip(self.gnns, self.batch_norms)):
            h = bn(gnn(h, edge_index, edge_attr))
            if i != last:
                h = F.relu(h)
            h = F.dropout(h, self.drop, training=self.training)
        return h


def collate(graphs):
    xs, eis, eas, batch, off = [], [], [], [], 0
    for gi, g in enumerate(graphs):
        n = len(g["atoms"])
        xs.append(torch.tensor(g["atoms"], dtype=torch.long))
        if g["edges"]:
            eis.append(torch.tensor(g["edges"], dtype=torch.long).t() + off)
            eas.append(torch.tensor(g["edge_attr"], dtype=torch.long))
        batch += [gi] * n
        off += n
    ei = torch.cat(eis, dim=1) if eis else torch.zeros(2, 0, dtype=torch.long)
    ea = torch.cat(eas, dim=0) if eas else torch.zeros(0, 2, dtype=torch.long)
    return torch.cat(xs), ei, ea, torch.tensor(batch, dtype=torch.long)


@torch.no_grad()
def graph_embeddings(model, graphs, batch_size=32):
    model.eval()
    out = []
    for s in range(0, len(graphs), batch_size):
        chunk = graphs[s : s + batch_size]
        x, ei, ea, batch = collate(chunk)
        h = model(x, ei, ea)
        sums = torch.zeros(len(chunk), h.size(1)).index_add_(0, batch, h)
        counts = torch.bincount(batch, minlength=len(chunk)).clamp(min=1).to(h.dtype)
        out.append(sums / counts.view(-1, 1))
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def node_embeddings(model, graphs, batch_size=32):
    """[atoms of all graphs, d]: eval-mode node representations, graphs in order."""
    model.eval()
    out = []
    for s in range(0, len(graphs), batch_size):
        x, ei, ea, _ = collate(graphs[s : s + batch_size])
        out.append(model(x, ei, ea))
    return torch.cat(out).numpy().astype(np.float32)


def randomise_batch_norms(model, gen):
    for bn in model.batch_norms:
        bn.weight.data.uniform_(0.5, 1.5, generator=gen)
        bn.bias.data.uniform_(-0.2, 0.2, generator=gen)
        bn.running_mean.uniform_(-0.5, 0.5, generator=gen)
        bn.running_var.uniform_(0.5, 2.0, generator=gen)
        bn.num_batches_tracked.fill_(7)


def write_graphs(path, graphs, skipped, source):
    with open(path, "w") as f:
        json.dump({"source": source, "skipped": skipped, "graphs": graphs}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["parity", "graphs"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--csv", required=True, help="MoleculeNet CSV (smiles or mol column)")
    ap.add_argument("--limit", type=int, default=0, help="first N valid molecules (0 = all)")
    ap.add_argument("--gcn-checkpoint")
    ap.add_argument("--graphsage-checkpoint")
    ap.add_argument("--gat-checkpoint")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    graphs, skipped = read_graphs(args.csv, args.limit)
    write_graphs(os.path.join(args.out, "graphs.json"), graphs, skipped, args.csv)
    if args.mode == "graphs":
        print(f"{len(graphs)} graphs ({skipped} skipped)")
        return

    state = torch.load(args.gcn_checkpoint, map_location="cpu", weights_only=True)
    for gcn_l2, name in [(False, "gcn_emb.npy"), (True, "gcn_l2_emb.npy")]:
        gcn = Encoder("gcn", gcn_l2=gcn_l2)
        gcn.load_state_dict(state, strict=True)
        np.save(os.path.join(args.out, name), graph_embeddings(gcn, graphs))

    torch.manual_seed(args.seed)
    gin = Encoder("gin")
    randomise_batch_norms(gin, torch.Generator().manual_seed(args.seed))
    sd = gin.state_dict()
    torch.save(sd, os.path.join(args.out, "gin_random.pt"))
    torch.save(
        sd, os.path.join(args.out, "gin_random_legacy.pth"), _use_new_zipfile_serialization=False
    )
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(args.out, "gin_random.safetensors"))
    np.save(os.path.join(args.out, "gin_emb.npy"), graph_embeddings(gin, graphs))
    for kind, path in [("graphsage", args.graphsage_checkpoint), ("gat", args.gat_checkpoint)]:
        if path:
            model = Encoder(kind)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
            np.save(os.path.join(args.out, f"{kind}_nodes.npy"), node_embeddings(model, graphs))
    print(f"{len(graphs)} graphs ({skipped} skipped); embeddings written to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
