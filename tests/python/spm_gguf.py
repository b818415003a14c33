"""Writes a GGUF file with a SentencePiece (`llama`) tokenizer and the reference tokenization of
a multilingual corpus, for crates/sluice-server/tests/spm_gguf.rs.

The tokenizer is trained here with the `sentencepiece` package (BPE with byte fallback, Llama 2's
settings: identity normalisation, a dummy prefix, whitespace kept), and written with the `gguf`
package the way llama.cpp's convert_hf_to_gguf.py writes a SentencePiece vocabulary: pieces,
scores and token types (normal, unknown, control, byte), the BOS/EOS/UNK ids and the flags.
The reference ids are sentencepiece's own, which llama.cpp's SPM tokenizer reproduces.

Usage: python3 spm_gguf.py OUT_DIR CORPUS_FILE [MODEL_GGUF]
Writes OUT_DIR/spm.gguf and OUT_DIR/expected.json ([{"text": ..., "ids": [...]}, ...]). With
MODEL_GGUF (a llama GGUF with a 512-row vocabulary, e.g. `sluice-server export-tiny`'s), also
writes OUT_DIR/model/spm-model.gguf: that model's tensors and hyperparameters with this
tokenizer and an embedded chat template (tokenizer.chat_template) in place of its own, so a
server can load and serve it from the file alone.
"""

import json
import os
import sys

import gguf
import sentencepiece as spm

# Texts the tokenizer is checked on: several scripts, accents, digits, runs of spaces, tabs,
# newlines, emoji and characters the training text never had (byte fallback).
CHECKS = [
    "Hello world",
    " leading space and  two  spaces",
    "The operator reads the time to first token.",
    "naïve café, déjà vu — Straße, Größe, smörgåsbord",
    "¿Dónde está la estación? ¡Olé!",
    "Привет, как дела? Всё хорошо.",
    "Καλημέρα κόσμε",
    "日本語のテキストと漢字",
    "中文分词测试，以及标点。",
    "한국어 문장입니다",
    "مرحبا بالعالم",
    "emoji 🚀🔥 and ✓ marks",
    "numbers 1234567890 and 3.14159",
    "tabs\tand\nnewlines\n\nend",
    "code: fn main() { println!(\"{}\", x + 1); }",
    "ẞ ǅ ﬁ Ω µ",  # rarely seen characters: byte fallback
    "",
]

# Rows of the tiny model's embedding: the trained vocabulary has exactly this many pieces.
VOCAB_SIZE = 512

# A chat template only this file carries: it refuses a system message, which the server's
# default template accepts, so a test can tell which one is in use.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m.role == 'system' %}"
    "{{ raise_exception('this template takes no system message') }}{% endif %}"
    "<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}<|assistant|>"
)

# Training text besides the corpus file: the same scripts in other words, so common pieces of
# each exist and others fall back to bytes.
EXTRA = [
    "Bonjour le monde, ceci est un café très naïf à Paris.",
    "Die Straße ist lang und die Größe der Stadt ist beeindruckend.",
    "¿Cómo estás? La estación está cerca de la plaza.",
    "Привет мир, это тестовый текст на русском языке.",
    "Καλημέρα, αυτό είναι ένα κείμενο.",
    "これは日本語の文章です。テキストを分割します。",
    "这是中文文本，用于测试分词。",
    "안녕하세요 세계, 한국어 텍스트입니다.",
    "مرحبا، هذا نص باللغة العربية.",
    "    indented code with four spaces",
    "numbers 42 and 2024 and 1.5",
]


def main() -> None:
    out_dir, corpus_file = sys.argv[1], sys.argv[2]
    with open(corpus_file, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    train = os.path.join(out_dir, "train.txt")
    with open(train, "w", encoding="utf-8") as f:
        for line in lines + EXTRA * 3:
            f.write(line + "\n")
    prefix = os.path.join(out_dir, "spm")
    spm.SentencePieceTrainer.train(
        input=train,
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        character_coverage=0.9995,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")

    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        piece = sp.id_to_piece(i)
        kind = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            kind = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            kind = gguf.TokenType.BYTE
        tokens.append(piece.encode("utf-8"))
        scores.append(sp.get_score(i))
        types.append(kind)

    def add_tokenizer(writer: gguf.GGUFWriter) -> None:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(sp.bos_id())
        writer.add_eos_token_id(sp.eos_id())
        writer.add_unk_token_id(sp.unk_id())
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)

    writer = gguf.GGUFWriter(os.path.join(out_dir, "spm.gguf"), "llama")
    add_tokenizer(writer)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    if len(sys.argv) > 3:
        retarget(sys.argv[3], os.path.join(out_dir, "model"), add_tokenizer)

    expected = [{"text": t, "ids": sp.encode(t)} for t in CHECKS + lines[:20]]
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)


def retarget(model_path: str, out_dir: str, add_tokenizer) -> None:
    """Copies MODEL_GGUF's tensors and non-tokenizer metadata, with this tokenizer."""
    os.makedirs(out_dir, exist_ok=True)
    reader = gguf.GGUFReader(model_path)
    writer = gguf.GGUFWriter(os.path.join(out_dir, "spm-model.gguf"), "llama")
    for key, field in reader.fields.items():
        # The header's own counts, the architecture (the writer sets it) and the old tokenizer.
        if key.startswith("GGUF.") or key == "general.architecture" or key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub_type)
    add_tokenizer(writer)
    writer.add_chat_template(CHAT_TEMPLATE)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()


if __name__ == "__main__":
    main()
