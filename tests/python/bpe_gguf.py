"""Writes GGUF files with a byte-level BPE (`gpt2`) tokenizer and reference tokenizations, for
crates/sluice-server/tests/bpe_gguf.rs.

The BPE is trained here with Hugging Face's `tokenizers` package, then written with the `gguf`
package as llama.cpp's converter writes one: tokens, merges, token types and
`tokenizer.ggml.pre`, once per pre-tokenizer checked (GPT-2's `gpt-2`, Llama 3's `llama-bpe`,
`qwen2`). The reference ids come from `tiktoken`, an independent implementation of byte-level
BPE (ranks, not merges) run with each pre-tokenizer's split regex, as OpenAI's and Llama 3's
tokenizers are; its ranks are mapped back to the trained vocabulary's ids.

llama.cpp's `default` pre-tokenizer applies four regexes one after another, which tiktoken (one
pattern) cannot express: its file is written with the texts and no ids ("ids": null), and
crates/sluice-server/tests/llama_cpp.rs checks it against llama.cpp itself.

Usage: python3 bpe_gguf.py OUT_DIR CORPUS_FILE
Writes OUT_DIR/<pre>.gguf and OUT_DIR/<pre>.json ([{"text": ..., "ids": [...]}, ...]).
"""

import json
import os
import sys

import gguf
import tiktoken
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

# llama.cpp's split regexes (llama-vocab.cpp), by tokenizer.ggml.pre.
SPLITS = {
    "gpt-2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "llama-bpe": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}

CHECKS = [
    "Hello world",
    "It's what they'll say; WE'RE sure I'D know.",
    "numbers 1234567890 and 3.14159, year 2024",
    " leading space and  two  spaces",
    "naïve café, déjà vu — Straße, Größe",
    "Привет, как дела? Всё хорошо.",
    "日本語のテキストと漢字、中文分词。",
    "emoji 🚀🔥 and ✓ marks",
    "tabs\tand\nnewlines\n\n  indented\r\nend",
    "code: fn main() { println!(\"{}\", x + 1); }",
    "",
]

EXTRA = [
    "Bonjour le monde, ceci est un café très naïf à Paris.",
    "Die Straße ist lang und die Größe der Stadt ist beeindruckend.",
    "Привет мир, это тестовый текст на русском языке.",
    "これは日本語の文章です。",
    "numbers 42 and 2024 and 1.5 and 31415926",
    "it's they've we'll I'm you'd",
    "    indented code with four spaces",
]


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def main() -> None:
    out_dir, corpus_file = sys.argv[1], sys.argv[2]
    with open(corpus_file, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    byte_char = bytes_to_unicode()
    char_byte = {c: b for b, c in byte_char.items()}

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        show_progress=False,
    )
    tok.train_from_iterator(lines + EXTRA * 3, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    tokens = [""] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.NORMAL for t in tokens]

    # tiktoken ranks: a byte's rank is its value, a merged token's is 256 + its merge's index,
    # so "lowest rank first" is "earliest merge first".
    ranks = {bytes([b]): b for b in range(256)}
    for i, m in enumerate(merges):
        joined = m.replace(" ", "")
        ranks[bytes(char_byte[c] for c in joined)] = 256 + i
    id_of_rank = {}
    for t, i in vocab.items():
        if t.startswith("<|"):
            continue
        id_of_rank[ranks[bytes(char_byte[c] for c in t)]] = i

    for pre, pattern in list(SPLITS.items()) + [("default", None)]:
        writer = gguf.GGUFWriter(os.path.join(out_dir, f"{pre}.gguf"), "llama")
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_merges(merges)
        writer.add_token_types(types)
        writer.add_bos_token_id(vocab["<|begin_of_text|>"])
        writer.add_eos_token_id(vocab["<|end_of_text|>"])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

        if pattern is None:
            expected = [{"text": t, "ids": None} for t in CHECKS + lines[:20]]
        else:
            enc = tiktoken.Encoding(
                name=pre, pat_str=pattern, mergeable_ranks=ranks, special_tokens={}
            )
            expected = [
                {"text": t, "ids": [id_of_rank[r] for r in enc.encode_ordinary(t)]}
                for t in CHECKS + lines[:20]
            ]
        with open(os.path.join(out_dir, f"{pre}.json"), "w", encoding="utf-8") as f:
            json.dump(expected, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
