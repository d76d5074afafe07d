"""Regenerate Phi-4-mini's tokenizer files in data/phi4-tokenizer/ from the o200k ranks on npm.

    python tools/phi4_tokenizer.py              # download the pinned tarball (hash-checked), convert, verify
    python tools/phi4_tokenizer.py --tarball F  # convert from a tarball already on disk (its hash is checked)

Phi-4-mini-instruct's tokenizer is OpenAI's o200k byte-level BPE (the ranks of `tiktoken`'s `o200k_base`) plus
Microsoft's chat and tool tokens. No Hugging Face download is possible here, and `tiktoken` itself fetches its rank
files from the internet at first use, but the npm registry is reachable: the `tiktoken` npm package
(requirements/phi4-tokenizer-source.txt, sha256-pinned) ships `encoders/o200k_base.json` — the split pattern,
the 199,998 ranks and `<|endoftext|>` / `<|endofprompt|>`. This tool turns it into the file set a Phi-4-mini
checkpoint carries:

- `tokenizer.json.xz`: the BPE for the `tokenizers` library (transformers' own tiktoken converter: every split of a
  token into two ranked tokens is a merge, `ignore_merges` on, o200k's split pattern, byte-level bytes), with the
  added tokens at Phi-4-mini's ids; xz-compressed (14 MB as JSON, the rest of the data folder is a few MB) and
  written out as `tokenizer.json` into each checkpoint folder (`labkit.models.add_tokenizer`);
- `tokenizer_config.json` / `special_tokens_map.json`: Phi-4-mini-instruct's (`GPT2Tokenizer`, no BOS added,
  `<|endoftext|>` as bos, eos, unk and pad, its chat template with the tool role);
- `reference.json`: strings (the chat-token test strings of llama.cpp's converter, the course's own texts, the
  languages of its upstream guides) and the ids the `tiktoken` package (PyPI) gives them with the same ranks,
  which tests/test_tokenizer.py checks in transformers and og;
- the licences (tiktoken is MIT, Phi-4-mini is MIT) and PROVENANCE.md (tarball digest, the command, the checks).

Added tokens and ids are those of microsoft/Phi-4-mini-instruct's published tokenizer configuration
(https://huggingface.co/microsoft/Phi-4-mini-instruct/blob/main/tokenizer_config.json, `added_tokens_decoder`):
o200k's two specials at their tiktoken ids and the ten chat and tool tokens 200019-200028; ids 199998 and
200000-200017 are unused there too. The model's embedding has 200,064 rows.

Checks before data/phi4-tokenizer/ is replaced: every reference string encodes to tiktoken's ids and decodes back,
and the ids of llama.cpp's pre-tokenizer test text hash to the value llama.cpp's converter lists for the published
GPT-4o tokenizer (`chkhsh` "gpt-4o" in `conversion/base.py`, pinned llama-cpp-python sdist) — the tokenizer.json
made here splits text exactly as the published one does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import lzma
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labkit.core import data  # noqa: E402
from labkit.core.cache import file_sha256 as sha256  # noqa: E402

sys.path.insert(0, str(REPO / "tools"))
from phi3_tokenizer import PHI3_LICENSE, replace_folder  # noqa: E402

OUT = REPO / "data" / "phi4-tokenizer"
SOURCE_LOCK = REPO / "requirements" / "phi4-tokenizer-source.txt"
TIKTOKEN_PYPI = "tiktoken==0.14.0"   # the reference encoder (Python, Rust core), installed into a temporary folder
LLAMA_SDIST = "llama_cpp_python-0.3.36"   # pinned in requirements/phi3-tokenizer-source.txt
GPT4O_CHKHSH = "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e"   # llama.cpp conversion/base.py

RANKS = 199_998           # o200k_base's mergeable ranks: ids 0-199997
EMBEDDING_ROWS = 200_064  # Phi-4-mini's vocab_size (config.json)
# microsoft/Phi-4-mini-instruct tokenizer_config.json, added_tokens_decoder (content -> id).
ADDED = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018, "<|assistant|>": 200019, "<|end|>": 200020,
         "<|user|>": 200021, "<|system|>": 200022, "<|tool|>": 200023, "<|/tool|>": 200024, "<|tool_call|>": 200025,
         "<|/tool_call|>": 200026, "<|tool_response|>": 200027, "<|tag|>": 200028}
# Phi-4-mini-instruct's chat template (the same file): no newline after a role tag; a system message may carry
# `tools` (JSON text) between <|tool|> and <|/tool|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}"
    "{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
# Strings no course text has: the languages of the course's upstream guides, code, emoji, numbers, whitespace.
UNSEEN = ["¿Qué debería comer en Lisboa?", "O que devo visitar em Kyoto na primavera?", "我应该在京都吃什么？",
          "교토에서 무엇을 먹어야 하나요?", "def f(x):\n    return {'a': x ** 2}  # 🦙✈️", "naïve café — 10 €",
          "1234567 3.14159 1,000,000", "  leading and trailing  \n\n\t", "I'VE been TOLD he'S there, 'RE you sure?",
          "<|user|>Plan a day in Rome.<|end|><|assistant|>", "<|endoftext|> is text here, <|endoftext|>"]



def mit(holder: str) -> str:
    """The MIT licence text (as tools/phi3_tokenizer.py writes Phi-3's) with another copyright line."""
    return PHI3_LICENSE.replace("Copyright (c) Microsoft Corporation.", f"Copyright (c) {holder}")


def pinned() -> tuple[str, str]:
    """(url, sha256) of the npm tarball, from requirements/phi4-tokenizer-source.txt."""
    line = next(x for x in SOURCE_LOCK.read_text(encoding="utf-8").splitlines() if x and not x.startswith("#"))
    url, digest = line.split(" --hash=sha256:")
    return url.strip(), digest.strip()


def download(into: Path) -> Path:
    url, _ = pinned()
    into.mkdir(parents=True, exist_ok=True)
    path = into / url.rsplit("/", 1)[1]
    with urllib.request.urlopen(url, timeout=120) as response:   # noqa: S310 (a fixed https URL)
        path.write_bytes(response.read())
    return path


def read_encoder(tarball: Path) -> dict:
    """o200k_base's pattern, ranks (bytes -> id) and specials from the npm tarball, after checking its digest."""
    _, digest = pinned()
    if sha256(tarball) != digest:
        raise SystemExit(f"{tarball}: sha256 {sha256(tarball)} is not the pinned {digest} ({SOURCE_LOCK.name}).")
    with tarfile.open(tarball) as tar:
        encoder = json.load(tar.extractfile("package/encoders/o200k_base.json"))
        package = json.load(tar.extractfile("package/package.json"))
    if package.get("license") != "MIT":
        raise SystemExit(f"the tiktoken npm package's licence is {package.get('license')!r}, not MIT")
    ranks = {}
    for line in encoder["bpe_ranks"].split("\n"):   # "<ignored> <first rank> <base64 token> <base64 token> ..."
        if line:
            _, first, *tokens = line.split(" ")
            ranks.update({base64.b64decode(t): int(first) + i for i, t in enumerate(tokens)})
    if len(ranks) != RANKS or sorted(ranks.values()) != list(range(RANKS)):
        raise SystemExit(f"o200k_base.json holds {len(ranks)} ranks, not o200k's {RANKS} consecutive ones.")
    if encoder["special_tokens"] != {k: ADDED[k] for k in ("<|endoftext|>", "<|endofprompt|>")}:
        raise SystemExit(f"o200k_base.json's specials {encoder['special_tokens']} are not o200k's.")
    return {"pattern": encoder["pat_str"], "ranks": ranks}


def tokenizer_object(encoder: dict):
    """The tokenizers.Tokenizer: transformers' tiktoken converter, added tokens placed at Phi-4-mini's ids."""
    from tokenizers import AddedToken, models
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class FromRanks(TikTokenConverter):       # the converter reads a tiktoken file; we have the ranks already
        def load_tiktoken_bpe(self, _url):
            return encoder["ranks"]

    converter = FromRanks(vocab_file="o200k_base", pattern=encoder["pattern"])
    vocab, merges = converter.extract_vocab_merges_from_model("o200k_base")
    # An added token whose content is in the vocabulary keeps that id: put them there first.
    tokenizer = converter.converted()
    tokenizer.model = models.BPE({**vocab, **ADDED}, merges, fuse_unk=False, ignore_merges=True)
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ADDED])
    got = {t: tokenizer.token_to_id(t) for t in ADDED}
    if got != ADDED:
        raise SystemExit(f"tokenizers placed the added tokens at {got}, not {ADDED}")
    return tokenizer


def write_configs(out: Path) -> None:
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                        "special": True} for t, i in sorted(ADDED.items(), key=lambda kv: kv[1])}
    config = {
        "add_bos_token": False, "add_eos_token": False, "added_tokens_decoder": decoder, "bos_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
        "model_max_length": 131072, "pad_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    special = {k: "<|endoftext|>" for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def tiktoken_encoding(encoder: dict):
    """tiktoken (PyPI) with the same ranks and pattern and Phi-4-mini's added tokens: the reference encoder."""
    try:
        import tiktoken
    except ImportError:
        target = Path(tempfile.mkdtemp(prefix="tiktoken-"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                        TIKTOKEN_PYPI], check=True)
        sys.path.insert(0, str(target))
        import tiktoken
    return tiktoken.Encoding("phi4-mini", pat_str=encoder["pattern"], mergeable_ranks=encoder["ranks"],
                             special_tokens=ADDED), tiktoken.__version__


def llama_cpp_check_text(sdist: Path | None) -> str:
    """CHK_TXT of llama.cpp's convert_hf_to_gguf_update.py, from the pinned llama-cpp-python sdist."""
    import ast

    if sdist is None:
        from phi3_tokenizer import download as download_sdist

        sdist = download_sdist(Path(tempfile.mkdtemp(prefix="llama-sdist-")))
    with tarfile.open(sdist) as tar:
        source = tar.extractfile(f"{LLAMA_SDIST}/vendor/llama.cpp/convert_hf_to_gguf_update.py").read().decode()
    line = next(x for x in source.splitlines() if x.startswith("CHK_TXT = "))
    return ast.literal_eval(line.split("=", 1)[1].strip())


def reference_texts(check_text: str) -> list[str]:
    travel = [row["prompt"] + row["response"] for row in data.travel("train")[:40]]
    corpus = [p.strip() for p in data.corpus("heldout").split("\n\n") if p.strip()][:20]
    return [check_text, *UNSEEN, *travel, *corpus]


def verify(tokenizer, encoding, texts: list[str]) -> list[dict]:
    """Every text encodes as tiktoken does and decodes back; llama.cpp's text hashes to the gpt-4o entry."""
    cases, wrong = [], []
    for text in texts:
        want = encoding.encode(text, allowed_special="all")
        got = tokenizer.encode(text, add_special_tokens=False).ids
        if got != want or tokenizer.decode(got, skip_special_tokens=False) != text:
            wrong.append(text)
        cases.append({"text": text, "ids": want})
    if wrong:
        raise SystemExit(f"{len(wrong)} of {len(texts)} strings differ from tiktoken: {wrong[:3]}")
    chkhsh = hashlib.sha256(str(cases[0]["ids"]).encode()).hexdigest()
    if chkhsh != GPT4O_CHKHSH:
        raise SystemExit(f"llama.cpp's pre-tokenizer text hashes to {chkhsh}, not the published gpt-4o {GPT4O_CHKHSH}")
    return cases


def convert(tarball: Path, out: Path, sdist: Path | None) -> None:
    encoder = read_encoder(tarball)
    tokenizer = tokenizer_object(encoder)
    encoding, tiktoken_version = tiktoken_encoding(encoder)
    cases = verify(tokenizer, encoding, reference_texts(llama_cpp_check_text(sdist)))
    text = tokenizer.to_str()
    (out / "tokenizer.json.xz").write_bytes(lzma.compress(text.encode("utf-8"), preset=9))
    write_configs(out)
    (out / "reference.json").write_text(json.dumps(
        {"source": f"tiktoken {tiktoken_version} (PyPI), o200k_base's ranks and pattern from the same tarball, "
                   "allowed_special='all'; the first text is llama.cpp's pre-tokenizer check text",
         "llama_cpp_gpt4o_chkhsh": GPT4O_CHKHSH, "cases": cases}, indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8")
    holder = "2022 OpenAI, Shantanu Jain (tiktoken; the npm port by dqbd, package.json `license: MIT`)"
    (out / "LICENSE-tiktoken").write_text(mit(holder), encoding="utf-8")
    (out / "LICENSE-Phi-4").write_text(mit("Microsoft Corporation."), encoding="utf-8")
    url, digest = pinned()
    (out / "PROVENANCE.md").write_text(f"""# Phi-4-mini's tokenizer, rebuilt offline

Generated by `python tools/phi4_tokenizer.py`; do not edit by hand.

- Source: {url} (sha256 `{digest}`, pinned in `requirements/phi4-tokenizer-source.txt`), file
  `package/encoders/o200k_base.json`: o200k_base's split pattern, {RANKS:,} ranks, `<|endoftext|>` 199999 and
  `<|endofprompt|>` 200018.
- Added tokens, ids and chat template: microsoft/Phi-4-mini-instruct's published `tokenizer_config.json`
  (`GPT2Tokenizer`; chat and tool tokens 200019-200028; no BOS added; `<|endoftext|>` as bos, eos, unk and pad).
  The model's embedding has {EMBEDDING_ROWS:,} rows; ids 199998, 200000-200017 and 200029+ are unused.
- `tokenizer.json.xz`: `tokenizer.json` ({len(text) / 1e6:.1f} MB) compressed; labkit writes it out into each
  checkpoint folder.
- Checked: {len(cases)} strings (`reference.json`) encode to the ids of tiktoken {tiktoken_version} with the same
  ranks and decode back; the ids of llama.cpp's pre-tokenizer text (`CHK_TXT`, {LLAMA_SDIST} sdist) hash to
  `{GPT4O_CHKHSH}`, the value llama.cpp lists for the published GPT-4o tokenizer.
- Licences: tiktoken and its npm port (MIT, `LICENSE-tiktoken`); Phi-4-mini's tokenizer (MIT, Microsoft,
  `LICENSE-Phi-4`).
""", encoding="utf-8")
    print(f"{len(cases)}/{len(cases)} strings encode as tiktoken {tiktoken_version} does; llama.cpp's gpt-4o "
          f"chkhsh matches")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help="the npm tarball already downloaded (its hash is checked)")
    parser.add_argument("--llama-sdist", type=Path, help=f"{LLAMA_SDIST}.tar.gz already downloaded")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tarball = args.tarball or download(tmp / "download")
        new = tmp / "out"
        new.mkdir()
        convert(tarball, new, args.llama_sdist)
        replace_folder(new, OUT)
    print(f"wrote {OUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
