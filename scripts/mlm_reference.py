#!/usr/bin/env python3
"""Reference for the masked-LM folders that `anges-train pretrain --model transformer` writes,
used by trainer/tests/integration/pretrain.rs.

Usage: mlm_reference.py FOLDER INPUTS OUT

Loads FOLDER with transformers' AutoModelForMaskedLM and fails when any weight is missing,
unexpected or mis-shaped (the folder must be a complete Hugging Face save); then runs the model
in eval mode on `input_ids` / `attention_mask` read from INPUTS (safetensors) and writes its
`logits` [B, L, V] to OUT (safetensors).
"""
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM
from transformers.utils import logging as hf_logging


def main():
    folder, inputs, out = sys.argv[1:4]
    hf_logging.set_verbosity_error()
    model, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"{folder} does not load cleanly: {problems}")
    model.eval()
    tensors = load_file(inputs)
    with torch.no_grad():
        logits = model(input_ids=tensors["input_ids"],
                       attention_mask=tensors["attention_mask"]).logits
    save_file({"logits": logits.contiguous()}, out)


if __name__ == "__main__":
    main()
