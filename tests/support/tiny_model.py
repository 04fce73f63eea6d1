"""A tiny chat model built on the fly: a BPE tokenizer trained on the given texts, a 2-layer Llama.

It has the same shape of problem as SmolLM2: a ChatML template whose end-of-turn token
``<|im_end|>`` is both EOS and pad.
"""
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_tokenizer(texts: list[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on ``texts`` with the ChatML template; EOS = pad = <|im_end|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_config(tokenizer, context_length: int = 256):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_tokenizer_folder(folder: Path, texts: list[str]) -> Path:
    """A model folder without weights (tokenizer and config.json): enough for the quality gate's token counts."""
    tokenizer = build_tiny_tokenizer(texts)
    tokenizer.save_pretrained(folder)
    tiny_config(tokenizer).save_pretrained(folder)
    return Path(folder)


def build_tiny_model(folder: Path, texts: list[str], vocab_size: int = 400, seed: int = 0) -> Path:
    """Write a tokenizer and a randomly initialised 2-layer LlamaForCausalLM to ``folder``."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(tokenizer))
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_taught_tiny_model(folder: Path, records: list[dict], steps: int = 60, seed: int = 0) -> Path:
    """A tiny model (as build_tiny_model) whose weights were then trained for ``steps`` full-parameter
    steps (AdamW, batches of 16) on the chat-rendered ``records`` ({"messages": [...]}): it answers in
    the records' manner ("Blue Spice is a pub that ..."), where a freshly initialised one answers only
    newlines (an empty text). A stand-in for a capable "big" model; a few seconds on one CPU thread.

    A plain loop: the platform's trainer makes LoRA adapters, and transformers' Trainer would add more
    setup than these few lines of training."""
    import torch
    from transformers import LlamaForCausalLM

    texts = [m["content"] for record in records for m in record["messages"]]
    tokenizer = build_tiny_tokenizer(texts)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(tokenizer))
    rendered = [tokenizer.apply_chat_template(record["messages"], tokenize=False) for record in records]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch = [rendered[(step * 16 + i) % len(rendered)] for i in range(16)]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        model(**encoded, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_random_adapter(model_dir: Path, folder: Path, seed: int = 0) -> Path:
    """A LoRA adapter (r 4, alpha 8) on q/k/v/o of the model in ``model_dir`` with random, not zero, B
    matrices, so that it changes the model's answers; saved with the model's tokenizer into ``folder``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(folder)
    return Path(folder)
