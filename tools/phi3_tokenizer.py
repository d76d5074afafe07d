"""Regenerate Phi-3.5's tokenizer files in data/phi3-tokenizer/ from llama.cpp's Phi-3 vocabulary.

    python tools/phi3_tokenizer.py            # download the pinned sdist (pip, hash-checked), convert, verify
    python tools/phi3_tokenizer.py --sdist F  # convert from an sdist already on disk (its hash is checked)

No Hugging Face download is possible here, but PyPI is: the llama-cpp-python sdist
(requirements/phi3-tokenizer-source.txt, hash-pinned) ships llama.cpp's `models/ggml-vocab-phi-3.gguf`
(Phi-3's 32064 tokens, their SentencePiece scores and types, the special ids) and
`ggml-vocab-phi-3.gguf.inp/.out`: 46 strings and the ids microsoft/Phi-3-mini-4k-instruct's fast tokenizer
gives them. This tool turns the GGUF vocabulary into the file set a Phi-3.5 checkpoint carries:

- `tokenizer.model`: the SentencePiece model (BPE, byte fallback, dummy prefix, Llama-2's normalizer); llama.cpp's
  converter (`make bench-peers`) needs exactly this file;
- `tokenizer.json`: the same BPE for the `tokenizers` library (merges ordered by the merged piece's score, a
  normalizer that prepends "▁", a byte-fallback decoder, no BOS added), the file onnxruntime-genai reads;
- `tokenizer_config.json` / `special_tokens_map.json`: Phi-3.5-mini-instruct's (`LlamaTokenizer`, no BOS added,
  `<|endoftext|>` as eos and pad, Phi-3.5's chat template with a system role), the chat tokens at their ids;
- `reference.json`: the 46 strings and their ids, which tests/test_tokenizer.py checks in transformers and og;
- the licences (llama.cpp and Phi-3 are MIT) and PROVENANCE.md (sdist and GGUF digests, the command).

It writes into a temporary folder, checks all 46 reference strings round-trip in transformers, and only then
replaces data/phi3-tokenizer/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labkit.core.cache import file_sha256 as sha256  # noqa: E402
from labkit.making.models import CHAT_TEMPLATE  # noqa: E402  Phi-3.5-mini-instruct's, with a system role

OUT = REPO / "data" / "phi3-tokenizer"
SOURCE_LOCK = REPO / "requirements" / "phi3-tokenizer-source.txt"
SDIST = "llama_cpp_python-0.3.36"
MEMBERS = {   # in the sdist -> what the tool reads it for
    "vendor/llama.cpp/models/ggml-vocab-phi-3.gguf": "vocabulary",
    "vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.inp": "reference strings",
    "vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.out": "reference ids",
    "vendor/llama.cpp/LICENSE": "licence",
    "vendor/llama.cpp/gguf-py": "its reader",
}
SEPARATOR = "\n__ggml_vocab_test__\n"

SENTENCEPIECE_PIECES = 32000        # ids 32000+ are Phi-3's added chat tokens and padding rows
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6   # SentencePiece and GGUF agree

PHI3_LICENSE = """MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def pinned_hash() -> str:
    return SOURCE_LOCK.read_text(encoding="utf-8").split("--hash=sha256:")[1].split()[0]


def download(into: Path) -> Path:
    """The pinned sdist, by pip with --require-hashes (the same check as every lock of the course)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
                    "-r", str(SOURCE_LOCK), "-d", str(into)], check=True)
    return next(into.glob(f"{SDIST}.tar.gz"))


def extract(sdist: Path, into: Path) -> dict[str, Path]:
    if sha256(sdist) != pinned_hash():
        raise SystemExit(f"{sdist}: sha256 {sha256(sdist)} is not the pinned {pinned_hash()} ({SOURCE_LOCK.name}).")
    with tarfile.open(sdist) as tar:
        wanted = [m for m in tar.getmembers()
                  if any(m.name == f"{SDIST}/{p}" or m.name.startswith(f"{SDIST}/{p}/") for p in MEMBERS)]
        tar.extractall(into, members=wanted, filter="data")
    return {member: into / SDIST / member for member in MEMBERS}


def read_gguf(path: Path) -> dict:
    """Tokens, scores, types and special ids of a GGUF vocabulary file (the GGUF v3 layout, no tensors)."""
    sys.path.insert(0, str(path.parents[1] / "gguf-py"))
    try:
        from gguf import GGUFReader
    except ImportError:   # gguf-py ships in the same sdist; extract it too
        raise SystemExit("gguf-py was not extracted next to the vocabulary") from None
    fields = GGUFReader(str(path)).fields

    def value(key):
        return fields[key].contents()

    return {"tokens": value("tokenizer.ggml.tokens"), "scores": value("tokenizer.ggml.scores"),
            "types": value("tokenizer.ggml.token_type"), "bos": value("tokenizer.ggml.bos_token_id"),
            "eos": value("tokenizer.ggml.eos_token_id"), "unk": value("tokenizer.ggml.unknown_token_id"),
            "pad": value("tokenizer.ggml.padding_token_id")}


def sentencepiece_pieces(vocab: dict) -> list[tuple[str, float, int]]:
    """The first 32000 pieces as Phi-3's tokenizer.model holds them.

    Hugging Face's GGUF conversion gives ids 0-2 the added tokens' score and types; Llama-2's SentencePiece model
    (which Phi-3's is) has <unk> UNKNOWN and <s>, </s> CONTROL, all with score 0."""
    pieces = [(t, float(s), int(k)) for t, s, k in zip(vocab["tokens"], vocab["scores"], vocab["types"], strict=True)]
    pieces = pieces[:SENTENCEPIECE_PIECES]
    pieces[0], pieces[1], pieces[2] = ("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)
    return pieces


def write_sentencepiece_model(pieces: list[tuple[str, float, int]], path: Path) -> None:
    # The SentencePiece model proto as transformers ships it (the sentencepiece package is not in the course's stack).
    from transformers.utils import sentencepiece_model_pb2_new as sp

    model = sp.ModelProto()
    for piece, score, kind in pieces:
        entry = model.pieces.add()
        entry.piece, entry.score, entry.type = piece, score, kind
    trainer = model.trainer_spec
    trainer.model_type = sp.TrainerSpec.BPE
    trainer.vocab_size = len(pieces)
    trainer.byte_fallback = True
    trainer.split_digits = True
    trainer.allow_whitespace_only_pieces = True
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = 0, 1, 2, -1
    trainer.unk_piece, trainer.bos_piece, trainer.eos_piece = "<unk>", "<s>", "</s>"
    normalizer = model.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = True
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    path.write_bytes(model.SerializeToString())


def bpe_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """Every split of a normal piece into two pieces, ordered as SentencePiece applies them: by the merged
    piece's score (higher first), then by the two parts' ids (what transformers' SentencePiece converter does)."""
    ids = {piece: i for i, (piece, _, _) in enumerate(pieces)}
    merges = []
    for piece, score, kind in pieces:
        if kind != NORMAL:
            continue
        splits = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in ids and piece[i:] in ids]
        merges += [(score, ids[a], ids[b], a, b) for a, b in splits]
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    return [(a, b) for *_, a, b in merges]


def added_tokens(vocab: dict) -> list[dict]:
    """<unk>, <s>, </s> and the chat tokens at their GGUF ids; all but <|endoftext|> eat the whitespace after them."""
    added = [{"id": i, "content": t, "rstrip": False} for i, t in enumerate(("<unk>", "<s>", "</s>"))]
    for i in range(SENTENCEPIECE_PIECES, len(vocab["tokens"])):
        token, kind = vocab["tokens"][i], int(vocab["types"][i])
        if kind == CONTROL:
            added.append({"id": i, "content": token, "rstrip": token != "<|endoftext|>"})
    return [{**a, "single_word": False, "lstrip": False, "normalized": False, "special": True} for a in added]


def write_tokenizer_json(pieces, vocab: dict, path: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    bpe = models.BPE(vocab={p: i for i, (p, _, _) in enumerate(pieces)}, merges=bpe_merges(pieces),
                     unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(content=" ", left=1, right=0)])
    added = added_tokens(vocab)
    tokenizer.add_special_tokens([AddedToken(a["content"], rstrip=a["rstrip"], lstrip=False, normalized=False,
                                             special=True, single_word=False) for a in added])
    tokenizer.save(str(path))
    saved = json.loads(path.read_text(encoding="utf-8"))
    got = {a["content"]: a["id"] for a in saved["added_tokens"]}
    want = {a["content"]: a["id"] for a in added}
    if got != want:
        raise SystemExit(f"tokenizers gave the added tokens other ids than the GGUF: {got} vs {want}")


def write_configs(vocab: dict, out: Path) -> None:
    decoder = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word",
                                                  "special")} for a in added_tokens(vocab)}
    config = {
        "add_bos_token": False, "add_eos_token": False, "added_tokens_decoder": decoder,
        "bos_token": "<s>", "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>", "legacy": False, "model_max_length": 131072, "pad_token": "<|endoftext|>",
        "padding_side": "left", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    special = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def reference_cases(inp: Path, out: Path) -> list[dict]:
    texts = inp.read_text(encoding="utf-8").split(SEPARATOR)
    ids = out.read_text(encoding="utf-8").split("\n")
    # Both files end with a separator / an empty line after the last case.
    if texts[-1] == "":
        texts = texts[:-1]
    ids = ids[:len(texts)]
    if len(texts) != len(ids):
        raise SystemExit(f"{inp.name} has {len(texts)} strings but {out.name} {len(ids)} id lines")
    return [{"text": t, "ids": [int(x) for x in line.split()]} for t, line in zip(texts, ids, strict=True)]


def verify(folder: Path, cases: list[dict]) -> None:
    """All reference strings encode to their ids and decode back, in transformers (beside a phi3 config.json:
    without one transformers 5 rebuilds the normalizer of a LlamaTokenizer and loses the dummy prefix)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json"):
            shutil.copy(folder / name, tmp)
        Path(tmp, "config.json").write_text(json.dumps({"model_type": "phi3", "vocab_size": 32064}), encoding="utf-8")
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        wrong = [c["text"] for c in cases if tokenizer.encode(c["text"], add_special_tokens=False) != c["ids"]
                 or tokenizer.decode(c["ids"]) != c["text"]]
    if wrong:
        raise SystemExit(f"{len(wrong)} of {len(cases)} reference strings do not round-trip: {wrong[:5]}")


def convert(files: dict[str, Path], sdist_sha256: str, out: Path) -> None:
    gguf = files["vendor/llama.cpp/models/ggml-vocab-phi-3.gguf"]
    vocab = read_gguf(gguf)
    if len(vocab["tokens"]) != 32064 or (vocab["bos"], vocab["eos"], vocab["unk"]) != (1, 32000, 0):
        raise SystemExit(f"{gguf.name} is not Phi-3's vocabulary: {len(vocab['tokens'])} tokens, bos {vocab['bos']}, "
                         f"eos {vocab['eos']}, unk {vocab['unk']}")
    pieces = sentencepiece_pieces(vocab)
    write_sentencepiece_model(pieces, out / "tokenizer.model")
    write_tokenizer_json(pieces, vocab, out / "tokenizer.json")
    write_configs(vocab, out)
    cases = reference_cases(files["vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.inp"],
                            files["vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.out"])
    (out / "reference.json").write_text(json.dumps(
        {"source": "llama.cpp models/ggml-vocab-phi-3.gguf.inp/.out: microsoft/Phi-3-mini-4k-instruct's fast "
                   "tokenizer, add_special_tokens=False", "cases": cases}, indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8")
    shutil.copy(files["vendor/llama.cpp/LICENSE"], out / "LICENSE-llama.cpp")
    (out / "LICENSE-Phi-3").write_text(PHI3_LICENSE, encoding="utf-8")
    (out / "PROVENANCE.md").write_text(f"""# Phi-3.5's tokenizer, rebuilt offline

Generated by `python tools/phi3_tokenizer.py`; do not edit by hand.

- Source: the `{SDIST}` sdist on PyPI (sha256 `{sdist_sha256}`, pinned in
  `requirements/phi3-tokenizer-source.txt`), file `vendor/llama.cpp/models/ggml-vocab-phi-3.gguf`
  (sha256 `{sha256(gguf)}`): Phi-3's 32064 tokens, SentencePiece scores and types, bos 1, eos 32000, unk 0.
- Reference: `ggml-vocab-phi-3.gguf.inp` / `.out` from the same folder, {len(cases)} strings and the ids of
  microsoft/Phi-3-mini-4k-instruct's fast tokenizer (`add_special_tokens=False`), in `reference.json`.
- Phi-3-mini and Phi-3.5-mini share this vocabulary; `tokenizer_config.json` and the chat template are
  Phi-3.5-mini-instruct's (system role; no BOS added; eos and pad `<|endoftext|>`).
- Licences: llama.cpp (MIT, `LICENSE-llama.cpp`); Phi-3's tokenizer (MIT, Microsoft, `LICENSE-Phi-3`).
""", encoding="utf-8")
    verify(out, cases)
    print(f"{len(cases)}/{len(cases)} reference strings round-trip in transformers")


def replace_folder(new: Path, out: Path) -> None:
    """Put the checked files of `new` in place of `out`, the old folder kept aside until the copy is whole."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    shutil.copytree(new, out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help=f"{SDIST}.tar.gz already downloaded (its hash is checked)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sdist = args.sdist or download(tmp / "download")
        files = extract(sdist, tmp / "src")
        new = tmp / "out"
        new.mkdir()
        convert(files, sha256(sdist), new)
        replace_folder(new, OUT)
    print(f"wrote {OUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
