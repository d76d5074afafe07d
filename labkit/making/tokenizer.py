"""What a genai folder needs of its tokenizer, and the step the model builder misses. Lab 01.

onnxruntime-genai 0.12 reads `tokenizer.json` and `tokenizer_config.json` and only the tokenizer
classes it knows (GPT2Tokenizer, LlamaTokenizer…). The model builder re-saves the tokenizer with
transformers 5, which writes the class `TokenizersBackend` and moves the chat template to
`chat_template.jinja`: every build labkit makes goes through `keep_source_tokenizer`, and
`python -m labkit keep-tokenizer MODEL BUILD` applies it to a build made with the builder's CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def keep_source_tokenizer(model_dir: Path, out_dir: Path) -> None:
    """Put the source's tokenizer files in the build, its class and chat template in tokenizer_config.json. Lab 01.

    The builder re-saves the tokenizer with transformers 5, which writes `TokenizersBackend` as the
    class; onnxruntime-genai 0.12 only reads the classes it knows (GPT2Tokenizer, LlamaTokenizer…).
    """
    # The source's own files: a folder may lack tokenizer.json (og reads no other) or carry another model's.
    for name in ("tokenizer.json", "tokenizer.model", "special_tokens_map.json"):
        if (Path(model_dir) / name).exists():
            shutil.copy2(Path(model_dir) / name, Path(out_dir) / name)
    source = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    target_path = Path(out_dir) / "tokenizer_config.json"
    target = json.loads(target_path.read_text(encoding="utf-8")) if target_path.exists() else dict(source)
    if source.get("tokenizer_class"):
        target["tokenizer_class"] = source["tokenizer_class"]
    template = source.get("chat_template")
    jinja = Path(model_dir) / "chat_template.jinja"
    if not template and jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    if template:
        target["chat_template"] = template
    target_path.write_text(json.dumps(target, indent=2), encoding="utf-8")
