"""Chat with a model folder the course built — only onnxruntime-genai needed (no labkit, no Jupyter).

    pip install onnxruntime-genai==0.12.2
    python app.py -m path/to/onnx                                   # chat in the terminal
    python app.py -m path/to/onnx -a path/to/onnx/adapter_weights.onnx_adapter --prompt "What should I eat in Rome?"
    python app.py -m path/to/onnx -a path/to/json.onnx_adapter --schema answer.schema.json --prompt "…"

Copy a build folder from `models/` (lab 01, 03) and this file to any laptop and it runs there:
the folder's genai_config.json says which execution provider to use. On a laptop CPU, take lab 01's
`int4` build of the laptop profile: blocks of 128, int8 compute and last-position logits, the fastest
there (lab 01's section 7 measures it). Replies stream as they are
generated; the conversation is kept (the chat template is applied to all turns), and the oldest
turns are dropped when it no longer fits the context. With --schema every answer is one JSON object
that fits the schema (onnxruntime-genai's guidance), for a program to read.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import onnxruntime_genai as og


def load_model(folder, threads=None):
    """`og.Model` of a folder with every ONNX Runtime session on all of this machine's cores (labkit's
    `generate.open_model` does the same; this file stays free of labkit).

    Left to its default, onnxruntime-genai runs each CPU session on one thread (measured on a 2-core machine:
    decode 130 vs 205 tok/s); an `intra_op_num_threads` already in the folder's genai_config.json wins."""
    config = og.Config(folder)
    model = json.loads((Path(folder) / "genai_config.json").read_text(encoding="utf-8")).get("model", {})
    # Each session's whole options: og's overlay replaces a vision or embedding session's options outright.
    sessions = {name: {"session_options": {**(part.get("session_options") or {}),
                                           "intra_op_num_threads": threads or os.cpu_count() or 1}}
                for name, part in model.items() if isinstance(part, dict) and part.get("filename")
                and "intra_op_num_threads" not in (part.get("session_options") or {})}
    if sessions:
        config.overlay(json.dumps({"model": sessions}))
    return og.Model(config)


# A JSON schema allows any whitespace between tokens, and a small model fills it with newlines: none, here.
COMPACT_JSON = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


def read_schema(path):
    """The JSON schema in `path` as og's guidance text (compact separators added), or exit with the reason."""
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as err:
        sys.exit(f"error: cannot read --schema {path}: {err.strerror}")
    except ValueError as err:
        sys.exit(f"error: --schema {path} is not JSON: {err}")
    if not isinstance(schema, dict):
        sys.exit(f"error: --schema {path} must hold one JSON object, a JSON schema such as "
                 '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}')
    return json.dumps({**schema, "x-guidance": {**COMPACT_JSON, **schema.get("x-guidance", {})}})


def new_generator(model, length, schema=None):
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=length)   # always bound it: the default is the whole context
    if schema is not None:
        params.set_guidance("json_schema", schema)   # og compiles it here: a bad schema fails before any token
    return og.Generator(model, params)


def reply(model, tokenizer, messages, max_new_tokens, adapters=None, stream_to=sys.stdout, schema=None):
    """Stream one assistant reply to `messages`; return its text."""
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    input_ids = tokenizer.encode(prompt)
    generator = new_generator(model, len(input_ids) + max_new_tokens, schema)
    if adapters is not None:
        generator.set_active_adapter(adapters, "adapter")
    generator.append_tokens(input_ids)
    stream, pieces = tokenizer.create_stream(), []
    while not generator.is_done():
        generator.generate_next_token()
        piece = stream.decode(generator.get_next_tokens()[0])   # whole characters, never half a UTF-8 byte run
        pieces.append(piece)
        stream_to.write(piece)
        stream_to.flush()
    del generator
    stream_to.write("\n")
    return "".join(pieces)


def unreadable(text, control_tokens=()):
    """Why the question cannot go to the model as typed, or None.

    A NUL would silently cut the prompt there; a control token such as <|end|> would be read as the chat
    template's own marker (ending the question, starting a forged assistant turn), not as text."""
    for position, char in enumerate(text):
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            return f"the question has {char!r} at position {position}, which the tokenizer cannot carry: remove it"
    found = sorted((text.find(token), -len(token), token) for token in control_tokens if token in text)
    if found:
        position, _, token = found[0]
        return (f"the question contains {token!r} at position {position}, one of the model's control tokens, which "
                f"the tokenizer would read as a chat marker, not as text: remove it or write it with spaces")
    return None


def control_tokens(folder):
    """The tokenizer's special tokens (<|end|>, <|assistant|>…), longest first."""
    try:
        with open(f"{folder}/tokenizer.json", encoding="utf-8") as f:
            added = json.load(f).get("added_tokens", [])
    except (OSError, ValueError):
        return ()
    return tuple(sorted({t["content"] for t in added if t.get("special")}, key=len, reverse=True))


def positive(text):
    value = int(text)
    if value < 1:   # onnxruntime-genai aborts the process when max_length leaves no room for a token
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def fits(tokenizer, messages, context, max_new_tokens):
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    return len(tokenizer.encode(prompt)) + max_new_tokens <= context


def main(argv=None):
    parser = argparse.ArgumentParser(description="Chat with an onnxruntime-genai model folder.")
    parser.add_argument("-m", "--model", required=True, help="a folder with genai_config.json (a course build)")
    parser.add_argument("-a", "--adapter", help="an .onnx_adapter file exported with this model (lab 03)")
    parser.add_argument("--system", default="You are a helpful travel assistant.")
    parser.add_argument("--max-new-tokens", type=positive, default=128)
    parser.add_argument("--prompt", action="append", help="ask this instead of reading the terminal (repeatable)")
    parser.add_argument("--schema", help="a JSON schema file: every answer is one JSON object that fits it")
    args = parser.parse_args(argv)
    schema = read_schema(args.schema) if args.schema else None
    if not sys.stdout.isatty():   # a pipe on Windows is cp1252: an answer in any script must still print
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
    if os.name == "nt" and not str(Path(args.model).resolve()).isascii():   # onnxruntime-genai issue 1262
        sys.exit(f"error: onnxruntime-genai cannot open a model under {Path(args.model).resolve()} on Windows (a "
                 "path with non-ASCII characters): copy the folder to a plain path such as C:\\phi-lab\\model.")

    try:
        model = load_model(args.model)
    except Exception as err:  # og raises plain RuntimeErrors: say what to pass instead
        sys.exit(f"error: cannot load {args.model}: {err}\nPass a folder the model builder or Olive wrote "
                 "(it holds genai_config.json and model.onnx).")
    tokenizer = og.Tokenizer(model)
    adapters = None
    if args.adapter:
        adapters = og.Adapters(model)
        try:
            adapters.load(args.adapter, "adapter")
        except Exception as err:  # noqa: BLE001 - og's RuntimeError does not name the file
            reason = str(err).splitlines()[0].split(") ")[-1]     # without the C++ function signature
            sys.exit(f"error: cannot load the adapter {args.adapter}: {reason}\n"
                     "Pass the adapter_weights.onnx_adapter exported with this model (lab 03), whole.")
    with open(f"{args.model}/genai_config.json", encoding="utf-8") as f:
        context = json.load(f)["model"]["context_length"]
    if args.max_new_tokens >= context:
        sys.exit(f"error: --max-new-tokens {args.max_new_tokens} leaves no room for a question in the model's "
                 f"context of {context} tokens: use less (the default is 128).")
    forbidden = control_tokens(args.model)
    if schema is not None:
        try:
            new_generator(model, 16, schema)     # compiled once now: a bad schema fails before the chat starts
        except RuntimeError as err:
            sys.exit(f"error: --schema {args.schema}: {str(err).replace('Error creating grammar: ', '')}")

    try:
        return chat(model, tokenizer, adapters, args, context, forbidden, schema)
    except KeyboardInterrupt:      # Ctrl-C at the prompt or mid-reply: leave quietly
        print()
        return 130


def chat(model, tokenizer, adapters, args, context, forbidden, schema=None):
    """The conversation loop: questions from --prompt or the terminal, replies streamed."""
    messages = [{"role": "system", "content": args.system}] if args.system else []
    questions = iter(args.prompt) if args.prompt else None
    while True:
        if questions is not None:
            question = next(questions, None)
            if question is None:
                break
            print(f"> {question}")
        else:
            try:
                question = input("> ").strip()
            except EOFError:
                break
            if question in ("", "exit", "quit"):
                break
        problem = unreadable(question, forbidden)
        first = 1 if args.system else 0             # the system message stays
        if not problem and not fits(tokenizer, messages[:first] + [{"role": "user", "content": question}], context,
                                    args.max_new_tokens):
            problem = (f"the question does not fit the model's context of {context} tokens with --max-new-tokens "
                       f"{args.max_new_tokens}: shorten it or lower --max-new-tokens")
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            if questions is not None:
                return 2
            continue
        messages.append({"role": "user", "content": question})
        while len(messages) > first + 1 and not fits(tokenizer, messages, context, args.max_new_tokens):
            del messages[first:first + 2]            # drop the oldest user/assistant turn
        answer = reply(model, tokenizer, messages, args.max_new_tokens, adapters, schema=schema)
        messages.append({"role": "assistant", "content": answer})
        if schema is not None and not complete_json(answer):
            print(f"error: the answer stopped at --max-new-tokens {args.max_new_tokens} before its JSON was "
                  "complete: raise --max-new-tokens", file=sys.stderr)
            if questions is not None:
                return 2
    return 0


def complete_json(text):
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
