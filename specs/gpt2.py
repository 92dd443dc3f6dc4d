"""A small GPT-2 built from its Hugging Face config (random weights: nothing
downloads). Needs ``pip install 'nnspec[hf]'``."""

from __future__ import annotations


def gpt2(n_layer: int = 2, n_head: int = 4, n_embd: int = 64, vocab_size: int = 64, n_positions: int = 64):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        vocab_size=vocab_size,
        n_positions=n_positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)
