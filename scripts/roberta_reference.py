#!/usr/bin/env python3
"""Reference for the Rust SMILES Transformer (trainer/src/models/transformer.rs), used by
trainer/tests/integration/transformer_parity.rs.

Usage: roberta_reference.py OUT_DIR

Builds a real Hugging Face `tokenizer.json` with the `tokenizers` library (WordLevel over the
atom-level SMILES regex tokens, Split pre-tokenizer on that regex, RobertaProcessing adding
<s> ... </s>, <pad> = 1), and tiny seeded random models that use it:
  OUT/mlm/   RobertaForMaskedLM (keys `roberta.*` + `lm_head.*`, as ChemBERTa-2 publishes)
  OUT/base/  the same encoder saved as a bare RobertaModel (keys without prefix, `pooler.*`)
  OUT/bert/  a BertModel (keys without prefix, token types, positions from 0)
each with config.json, model.safetensors and tokenizer.json. It then pads-encodes the SMILES
below, runs the models in eval mode and writes OUT/reference.safetensors (input_ids,
attention_mask, roberta_hidden, bert_hidden) and OUT/smiles.json.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import (BertConfig, BertModel, RobertaConfig, RobertaForMaskedLM,
                          RobertaModel)
from transformers.utils import logging as hf_logging

# Same pattern as trainer/src/featurize/tokens.rs (Schwaller et al.).
SMILES_REGEX = (r"(\[[^\]]+\]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>"
                r"|\*|\$|%[0-9]{2}|[0-9])")

SMILES = [
    "C", "CCO", "O=C=O", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "C[C@@H](N)C(=O)O", "ClC(Cl)Cl", "Brc1ccc(Br)cc1", "[Na+].[Cl-]", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O", "C1CCCCC1", "N#N", "CCN(CC)CC", "c1ccncc1",
    "CC(C)(C)OC(=O)N[C@@H](Cc1ccccc1)C(=O)O", "FC(F)(F)c1ccccc1", "S=C=S",
    # A token absent from the vocabulary (becomes <unk>).
    "CC[Se]C",
]
VOCAB_SMILES = SMILES[:-1]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64, hidden_act="gelu", initializer_range=0.2,
             layer_norm_eps=1e-5, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def build_tokenizer():
    split = pre_tokenizers.Split(Regex(SMILES_REGEX), behavior="isolated")
    tokens = sorted({piece for s in VOCAB_SMILES for piece, _ in split.pre_tokenize_str(s)})
    vocab = {t: i for i, t in enumerate(SPECIALS + tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = split
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.add_special_tokens(SPECIALS)
    return tok


def perturb(model):
    """Random biases and LayerNorm affine parameters (HF initialises them to 0/1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))


def save(model, tok, out):
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))


def main():
    out = sys.argv[1]
    hf_logging.disable_progress_bar()
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    tok = build_tokenizer()
    vocab_size = tok.get_vocab_size()

    rcfg = RobertaConfig(vocab_size=vocab_size, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, **SIZES)
    rcfg._attn_implementation = "eager"
    mlm = RobertaForMaskedLM(rcfg).eval()
    perturb(mlm)
    save(mlm, tok, os.path.join(out, "mlm"))
    base = RobertaModel(rcfg, add_pooling_layer=True).eval()
    base.load_state_dict(mlm.roberta.state_dict(), strict=False)
    save(base, tok, os.path.join(out, "base"))

    bcfg = BertConfig(vocab_size=vocab_size, type_vocab_size=2, pad_token_id=1,
                      **{**SIZES, "layer_norm_eps": 1e-12})
    bcfg._attn_implementation = "eager"
    bert = BertModel(bcfg).eval()
    perturb(bert)
    save(bert, tok, os.path.join(out, "bert"))

    tok.enable_padding(pad_id=1, pad_token="<pad>")
    enc = tok.encode_batch(SMILES)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    with torch.no_grad():
        r_hidden = mlm.roberta(input_ids=ids, attention_mask=mask).last_hidden_state
        b_hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        base_hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(r_hidden, base_hidden)
    save_file({"input_ids": ids, "attention_mask": mask, "roberta_hidden": r_hidden.contiguous(),
               "bert_hidden": b_hidden.contiguous()}, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "smiles.json"), "w") as f:
        json.dump(SMILES, f)


if __name__ == "__main__":
    main()
