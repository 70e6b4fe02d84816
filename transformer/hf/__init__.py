"""Pretrained Hugging Face models in and out: `init_from=hf:<folder or hub id>` (BERT, RoBERTa, BART, Marian,
Pegasus) and `scripts/export.py format=hf`. families.py says how each family's config and tensors map to ours;
pretrained.py reads and writes the folders. Needs the `hf` extra (transformers is not needed at run time:
safetensors, tokenizers and huggingface_hub are)."""
