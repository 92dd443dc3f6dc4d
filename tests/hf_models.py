"""Small Hugging Face models for tests, built from configs (never downloaded).

Each factory builds the same weights every time (its own seed, the caller's
random state untouched) and is importable as ``tests.hf_models:NAME`` by a
spec's ``model: {factory: ...}``. Sizes are tiny: a forward pass takes
milliseconds on a CPU.

    gpt2()   GPT2LMHeadModel, lm_head tied to transformer.wte (NewGELUActivation)
    bert()   BertModel with its pooler (GELUActivation, Tanh)
    vit()    ViTModel, 16x16 RGB images in 4x4 patches (GELUActivation)
    llama()  LlamaForCausalLM, grouped-query attention (SiLUActivation)
    t5()     T5ForConditionalGeneration, encoder-decoder, lm_head tied to shared (ReLU)
"""

from __future__ import annotations

import torch

VOCAB = 96  # every text model's vocabulary
SEQ = 32  # the longest sequence the text models take
IMAGE = 16  # ViT's image size (pixels a side), 3 channels


def _build(cls, config, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB, n_positions=SEQ, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return _build(GPT2LMHeadModel, config, seed)


def bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=SEQ,
    )
    return _build(BertModel, config, seed)


def vit(seed: int = 0):
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=IMAGE,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return _build(ViTModel, config, seed)


def llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=SEQ,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return _build(LlamaForCausalLM, config, seed)


def t5(seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return _build(T5ForConditionalGeneration, config, seed)


FACTORIES = {"gpt2": gpt2, "bert": bert, "vit": vit, "llama": llama, "t5": t5}
