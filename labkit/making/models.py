"""The course's models: a tiny Phi-3 created locally, and resolution of `tiny` / local dir / hub id.

No weights can be downloaded in the workshop's CPU profile, so labkit makes its own Phi-3:
a real `Phi3ForCausalLM` (LongRoPE config like Phi-3.5-mini, head_dim a multiple of 16 as the
CPU GroupQueryAttention kernel needs) that speaks Phi-3.5's own tokenizer (32064 ids, its chat
tokens at their ids; `data/phi3-tokenizer/`, rebuilt from llama.cpp's copy by
`tools/phi3_tokenizer.py`), pre-trained on `data/corpus/` so that quantization has something real to
preserve and fine-tuning something to build on.

`tiny` is pre-trained once, by `python tools/pretrain_tiny.py`, and committed under `data/tiny/`, so
attendees do not pay for pre-training; `create_tiny` copies it into the model cache after checking its
digest. Any other spec is pre-trained here on first use. Everything is deterministic on one machine and
cached under a key made of the spec, the tokenizer and the corpus.
Taught in lab 00 (what the model is) and lab 01 (what the builder does with it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core import cache, data, paths, sizing
from ..core.errors import InputError, MissingInput

PHI3_TOKENIZER = paths.DATA / "phi3-tokenizer"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json")
# Phi-3.5's ids: <s>, and what ends a turn or the text (its generation_config's eos list).
BOS_ID, END_ID, ASSISTANT_ID, ENDOFTEXT_ID = 1, 32007, 32001, 32000
EOS_IDS = [END_ID, ASSISTANT_ID, ENDOFTEXT_ID]
PHI3_VOCABULARY = 32011        # 32000 SentencePiece pieces + 11 added tokens (<|endoftext|> … <|user|>)

# Phi-3.5-mini-instruct's chat template (system/user/assistant turns closed by <|end|>), as
# data/phi3-tokenizer/tokenizer_config.json carries it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

HUB_IDS = {"mini": "microsoft/Phi-3.5-mini-instruct", "vision": "microsoft/Phi-3.5-vision-instruct",
           "phi4-mini": "microsoft/Phi-4-mini-instruct"}

# Phi-4-mini-instruct's tokenizer: o200k byte-level BPE plus its chat and tool tokens (`data/phi4-tokenizer/`,
# rebuilt from the o200k ranks by `tools/phi4_tokenizer.py`). <|endoftext|> is bos, eos and pad; its
# generation_config also stops at <|end|>.
PHI4_TOKENIZER = paths.DATA / "phi4-tokenizer"
PHI4_ENDOFTEXT_ID, PHI4_END_ID = 199999, 200020
PHI4_EOS_IDS = [PHI4_END_ID, PHI4_ENDOFTEXT_ID]


@dataclass(frozen=True)
class TinySpec:
    """Shape and training budget of a locally created Phi-3. `tiny` is the course default. Lab 00."""

    name: str = "tiny"
    vocab_size: int = 32064         # Phi-3's. Never 3*hidden or 2*intermediate: the builder finds lm_head by width
    # With 32064 ids the output layer and its softmax are most of a training step's cost (a LoRA step, batch 8 x 80
    # tokens, 2 cores: 120 ms with 2048 ids, 410 ms with 32064 at width 256, 316 ms at 192): 192 wide keeps lab 03's
    # fine-tune short.
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 6              # head_dim 32: a multiple of 16 for CPU GroupQueryAttention
    num_kv_heads: int = 2
    intermediate_size: int = 768
    max_position_embeddings: int = 8192
    original_max_position_embeddings: int = 2048   # != max_position -> LongRoPE, as Phi-3.5-mini (131072 vs 4096)
    train_steps: int = 3000         # 0 = random weights (the benchmark model)
    seq_len: int = 128
    batch_size: int = 8
    learning_rate: float = 2e-3
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def validate(self) -> None:
        if self.hidden_size % self.num_heads or self.head_dim % 16:
            raise InputError(f"head_dim = hidden_size / num_heads = {self.hidden_size / self.num_heads} must be a "
                             "multiple of 16 (ONNX Runtime's CPU GroupQueryAttention needs it).")
        if self.vocab_size in (3 * self.hidden_size, 2 * self.intermediate_size,
                               self.hidden_size + 2 * self.num_kv_heads * self.head_dim):
            raise InputError("vocab_size equals a fused projection's width; the model builder would wire "
                             "lm_head to the wrong layer. Pick another vocab_size.")
        if self.vocab_size < PHI3_VOCABULARY:
            raise InputError(f"vocab_size={self.vocab_size}: Phi-3.5's tokenizer has ids up to {PHI3_VOCABULARY - 1} "
                             f"(Phi-3 pads its embedding to 32064 rows). Use vocab_size=32064.")


SPECS = {
    "tiny": TinySpec(),
    # ~160M parameters, random weights: big enough that decode is memory-bound like a real LLM.
    # Phi-3's vocabulary width (32064): the lm_head is a real share of what each decode step reads.
    "bench": TinySpec(name="bench", vocab_size=32064, hidden_size=768, num_layers=12, num_heads=12,
                      num_kv_heads=12, intermediate_size=3072, train_steps=0),
}


# ------------------------------------------------------------------ tokenizer
def add_phi3_tokenizer(out_dir: Path) -> None:
    """Put Phi-3.5's tokenizer files in a checkpoint folder (any Phi-3 family model, vision included). Lab 00."""
    for name in TOKENIZER_FILES:
        shutil.copy2(PHI3_TOKENIZER / name, Path(out_dir) / name)


def add_phi4_tokenizer(out_dir: Path) -> None:
    """Put Phi-4-mini's tokenizer files in a checkpoint folder (`tokenizer.json` is stored xz-compressed). Lab 01."""
    import lzma

    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(PHI4_TOKENIZER / name, Path(out_dir) / name)
    text = lzma.decompress((PHI4_TOKENIZER / "tokenizer.json.xz").read_bytes())
    tmp = Path(out_dir) / "tokenizer.json.partial"
    tmp.write_bytes(text)
    tmp.replace(Path(out_dir) / "tokenizer.json")


def phi3_tokenizer(out_dir: Path):
    """Put Phi-3.5's tokenizer files in a Phi-3 checkpoint folder and load them with transformers. Lab 00.

    The folder needs its `config.json` first: transformers 5 reads `model_type: phi3` to keep SentencePiece's
    dummy prefix (without it " Hello" loses its "▁")."""
    from transformers import AutoTokenizer

    if not (Path(out_dir) / "config.json").exists():
        raise MissingInput(f"{out_dir} has no config.json: save the model's config before its tokenizer.")
    add_phi3_tokenizer(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


# ------------------------------------------------------------------ model
def phi3_config(spec: TinySpec):
    """The transformers `Phi3Config` of a spec: Phi-3.5-mini's layout and token ids, scaled down. Lab 00."""
    from transformers import Phi3Config

    half = spec.head_dim // 2
    return Phi3Config(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        original_max_position_embeddings=spec.original_max_position_embeddings,
        # LongRoPE as in Phi-3.5-mini: per-frequency factors for short and long contexts.
        # "type" is kept beside "rope_type" because the model builder reads rope_scaling["type"].
        rope_scaling={"rope_type": "longrope", "type": "longrope", "rope_theta": 10000.0,
                      "factor": spec.max_position_embeddings / spec.original_max_position_embeddings,
                      "short_factor": [1.0] * half,
                      "long_factor": [1.0 + i / half for i in range(half)]},
        bos_token_id=BOS_ID, eos_token_id=EOS_IDS, pad_token_id=ENDOFTEXT_ID, tie_word_embeddings=False,
        attn_implementation="eager",
    )


def _cache_key(spec: TinySpec) -> str:
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    # The weights are trained on the corpus in the tokenizer's ids: both are part of the key.
    for f in [*sorted((paths.DATA / "corpus").glob("*.txt")), PHI3_TOKENIZER / "tokenizer.json"]:
        h.update(f.read_bytes())
    h.update(MODEL_FORMAT.encode())
    return h.hexdigest()[:12]


MODEL_FORMAT = "labkit-tiny-v2"  # bump when the creation code changes what it writes


def pretrain(model, tokenizer, spec: TinySpec, progress: bool = True) -> list[float]:
    """A few hundred next-token steps on the corpus. Returns the loss per step. Lab 00."""
    import torch
    from tqdm.auto import tqdm

    ids = []
    for para in data.corpus("train").split("\n\n"):
        ids += tokenizer(para.strip())["input_ids"] + [tokenizer.eos_token_id]
    tokens = torch.tensor(ids, dtype=torch.long)
    n_blocks = len(tokens) // spec.seq_len
    blocks = tokens[: n_blocks * spec.seq_len].view(n_blocks, spec.seq_len)

    gen = torch.Generator().manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.learning_rate, total_steps=spec.train_steps,
                                                pct_start=0.1)
    losses = []
    model.train()
    for _ in tqdm(range(spec.train_steps), desc=f"pre-training {spec.name}", disable=not progress):
        batch = blocks[torch.randint(0, n_blocks, (spec.batch_size,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


COMMITTED_TINY = paths.DATA / "tiny"   # written by tools/pretrain_tiny.py


def pretrain_into(folder: Path, spec: TinySpec, progress: bool = True) -> dict:
    """Pre-train a model of `spec` and save it with Phi-3.5's tokenizer in `folder`; returns the record. Lab 00."""
    import torch
    from transformers import Phi3ForCausalLM

    started = time.perf_counter()
    torch.manual_seed(spec.seed)
    config = phi3_config(spec)
    config.architectures = ["Phi3ForCausalLM"]
    config.save_pretrained(folder)
    tokenizer = phi3_tokenizer(folder)
    model = Phi3ForCausalLM(config)
    threads = torch.get_num_threads()
    losses = pretrain(model, tokenizer, spec, progress) if spec.train_steps else []
    torch.set_num_threads(threads)
    _save_bf16(model, folder)
    record = {"spec": asdict(spec), "cache_key": _cache_key(spec),
              "parameters": sum(p.numel() for p in model.parameters()),
              "train_losses": [round(x, 4) for x in losses], "seconds": round(time.perf_counter() - started, 1)}
    if spec.train_steps:
        record["heldout_perplexity"] = torch_perplexity(model, tokenizer, data.corpus("heldout"))
        record["uniform_perplexity"] = float(spec.vocab_size)
    return record


def _save_bf16(model, folder: Path) -> None:
    """Weights stored as bfloat16 (Phi-3.5's own storage type; half the bytes of the committed copy), config
    dtype float32 so every tool loads them in float32. The model in memory is rounded the same way first, so
    what is measured after this is what was saved."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.bfloat16).to(parameter.dtype))
    model.config.architectures = ["Phi3ForCausalLM"]
    model.to(torch.bfloat16).save_pretrained(folder)
    model.to(torch.float32)
    config_file = Path(folder) / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["dtype"] = "float32"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def committed_card(spec: TinySpec) -> dict | None:
    """The record of the committed pre-trained `tiny` when it was made from this spec and this corpus. Lab 00."""
    card_file = COMMITTED_TINY / "labkit_model.json"
    if not card_file.exists():
        return None
    card = json.loads(card_file.read_text(encoding="utf-8"))
    return card if card.get("cache_key") == _cache_key(spec) else None


def _copy_committed(tmp: Path, card: dict) -> None:
    """Copy the committed checkpoint, refusing one whose weights are not the ones its record names."""
    weights = COMMITTED_TINY / "model.safetensors"
    if not weights.exists() or cache.file_sha256(weights) != card["weights_sha256"]:
        raise MissingInput(f"{weights} is missing or does not match its recorded digest (a partial checkout or "
                           "a Git LFS pointer?). Fix: `git checkout -- data/tiny`, or regenerate it with "
                           "`python tools/pretrain_tiny.py` (about 40 minutes on 2 cores).")
    for f in COMMITTED_TINY.iterdir():
        shutil.copy2(f, tmp / f.name)


def create_tiny(spec: TinySpec | str = "tiny", force: bool = False, progress: bool = True) -> Path:
    """Create (or reuse) a locally made Phi-3 checkpoint dir and return its path. Lab 00.

    The folder is a normal Hugging Face checkpoint (`config.json`, `model.safetensors`, tokenizer
    files) plus `labkit_model.json` with the spec and the training record. `tiny` comes from the
    pre-trained copy committed in `data/tiny/` when it matches the spec and the corpus.
    """
    spec = SPECS[spec] if isinstance(spec, str) else spec
    spec.validate()
    final = cache.output_dir(f"{spec.name}-{_cache_key(spec)}", force=force)
    with cache.cached_dir(final, force, f"the {spec.name} model") as tmp:
        if tmp is None:
            return final
        card = committed_card(spec)
        if card is not None:
            _copy_committed(tmp, card)
            return final
        if spec.name == "tiny" and spec.train_steps:
            print(f"{COMMITTED_TINY} was not made from this spec and corpus: pre-training here instead "
                  "(regenerate the committed copy with `python tools/pretrain_tiny.py`).")
        record = pretrain_into(tmp, spec, progress)
        (tmp / "labkit_model.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return final


_TOKENIZER_FILES = (*TOKENIZER_FILES, "chat_template.jinja")


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy a checkpoint's tokenizer files into a derived checkpoint folder. Lab 00 (used in labs 02, 03)."""
    for name in _TOKENIZER_FILES:
        if (Path(src) / name).exists():
            shutil.copy2(Path(src) / name, Path(dst) / name)


def model_card(model_dir: Path) -> dict:
    """The spec and training record labkit stored beside a tiny model (empty for other models). Lab 00."""
    f = Path(model_dir) / "labkit_model.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}


def describe(model_dir: Path) -> dict:
    """Architecture and size of a checkpoint folder, plus labkit's training record if it made it. Lab 00."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    card = model_card(model_dir)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    info = {
        "folder": paths.shown(model_dir),
        "architecture": (config.get("architectures") or ["?"])[0],
        "layers": config.get("num_hidden_layers"),
        "hidden_size": config.get("hidden_size"),
        "heads": f"{config.get('num_attention_heads')} (kv {config.get('num_key_value_heads')})",
        "vocab_size": config.get("vocab_size"),
        "context_length": config.get("max_position_embeddings"),
        "rope": rope.get("rope_type") or rope.get("type") or "default",
    }
    # labkit's record for a model it made; a published checkpoint's count from its config
    info["parameters"] = card.get("parameters") or sizing.parameters_of(sizing.text_config(config))
    if card:
        if "heldout_perplexity" in card:
            info["heldout_perplexity"] = round(card["heldout_perplexity"], 2)
            info["uniform_perplexity"] = card["uniform_perplexity"]
        info["created_in_s"] = card["seconds"]
    return info


def torch_perplexity(model, tokenizer, text: str, block: int = 128) -> float:
    """Perplexity of a PyTorch causal LM on `text`, in non-overlapping blocks. Lab 00."""
    import torch

    ids = torch.tensor(tokenizer(text)["input_ids"])
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, block):
            chunk = ids[start:start + block + 1]
            if len(chunk) < 2:
                break
            logits = model(input_ids=chunk[None, :-1]).logits[0]
            nll += torch.nn.functional.cross_entropy(logits.float(), chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
    return math.exp(nll / count)


# ------------------------------------------------------------------ resolution
def is_offline() -> bool:
    """True when HF_HUB_OFFLINE is set: hub ids must then come from the local cache. Lab 00."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def shadows_requested() -> bool:
    """True when `LABKIT_SHADOWS=1`: the Phi-3.5 hub ids resolve to random-weight shadows of them. Lab 00.

    For machines without the real checkpoints (CI, this course's own laptop-profile runs): a shadow has the
    real architecture and tokenizer, so sizes, memory and speed are real and answers are noise.
    `LABKIT_SHADOW_LAYERS=N` makes them N decoder (and CLIP) layers deep: the laptop profile's quick test."""
    return os.environ.get("LABKIT_SHADOWS", "0").lower() in ("1", "true", "yes")


def shadow_layers() -> int | None:
    """`LABKIT_SHADOW_LAYERS` as a depth (None: the published depth). Lab 00."""
    value = os.environ.get("LABKIT_SHADOW_LAYERS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"LABKIT_SHADOW_LAYERS={value!r}: give a number of layers (1 or more), or unset it "
                         "for shadows of the published depth.")
    return int(value)


SHADOW_NOTICE = ("Shadow model (LABKIT_SHADOWS=1): the published architecture and tokenizer with random weights, so "
                 "answers are noise; only sizes, memory and speed are real.")


def _shadow_of(hub_id: str) -> Path:
    from . import shadow  # shadow builds on this module: imported here, not at the top

    name = {HUB_IDS["mini"]: "phi-3.5-mini", HUB_IDS["vision"]: "phi-3.5-vision",
            HUB_IDS["phi4-mini"]: "phi-4-mini"}[hub_id]
    layers = shadow_layers()
    vision_layers = min(layers, 24) if layers and name == "phi-3.5-vision" else None
    return shadow.create_shadow(name, min(layers, 32) if layers else None, vision_layers=vision_layers,
                                )


def resolve_model(name: str | os.PathLike = "tiny") -> Path:
    """Turn a model argument into a local checkpoint dir. Lab 00.

    - `tiny` / `bench`: created locally (see `create_tiny`);
    - a local folder with a `config.json`;
    - a hub id such as `microsoft/Phi-3.5-mini-instruct`: the local HF cache, or a download when online;
      with `LABKIT_SHADOWS=1` the Phi-3.5 and Phi-4-mini ids resolve to their shadows (`shadows_requested`).
    """
    name = str(name)
    if name in SPECS:
        return create_tiny(name)
    if shadows_requested() and name in HUB_IDS.values():
        return _shadow_of(name)
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise MissingInput(f"{local} has no config.json: point `model` at a Hugging Face checkpoint folder.")
        paths.read_json(local / "config.json", "restore the checkpoint's config.json (re-download the "
                        "checkpoint, e.g. `hf download MODEL_ID`) or point `model` at an intact folder")
        return local
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise MissingInput(f"Model {name!r} is neither `tiny`, an existing folder, nor a hub id like "
                                f"{HUB_IDS['mini']!r}.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except LocalEntryNotFoundError:
        if is_offline():
            raise MissingInput(
                f"{name} is not in the local Hugging Face cache and this machine is offline (HF_HUB_OFFLINE=1). "
                f"Fix: on a machine with network run `hf download {name}` (or copy its folder here and pass the "
                "folder as `model`), or use model='tiny' with the cpu profile.") from None
    return Path(snapshot_download(name))
