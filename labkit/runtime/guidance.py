"""Answers a program can parse: onnxruntime-genai's guidance for JSON schemas, regexes and Lark grammars. Lab 04.

`og.GeneratorParams.set_guidance(kind, text)` (LLGuidance, inside the CPU wheel since 0.8) masks at every step
the tokens that would take the answer outside a JSON schema (`json_schema`), a regular expression (`regex`) or a
Lark grammar (`lark_grammar`): whatever the model prefers, the answer has that form. labkit's `schema=`, `regex=`
and `grammar=` options become that call, checked first:

- a schema must be a valid JSON schema (checked with jsonschema) and gets LLGuidance's compact separators: a JSON
  schema allows any whitespace between its tokens, and a small model may fill that room with newlines (the course
  model did, 80 of them and not one field, before its pre-training read JSON);
- og compiles a regex or grammar when the generator is created, before the first token: its error is passed on
  with the option named;
- the shortest answer a schema allows must fit `max_new_tokens`, and beams are refused: og 0.12.2 applies
  guidance to greedy search and sampling only (with num_beams=3 the regex `(spring|summer)` gave "supring").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .inputs import GenerationError

KINDS = {"schema": "json_schema", "regex": "regex", "grammar": "lark_grammar"}
# No free whitespace: `{"city": "Rome", "country": "Italy"}`, the separators Python's json.dumps writes.
COMPACT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


@dataclass(frozen=True)
class Guidance:
    """One guidance request: the option, the text og's `set_guidance` receives, the schema it came from. Lab 04."""

    option: str                 # schema, regex or grammar
    text: str
    schema: dict | None = None

    @property
    def kind(self) -> str:
        """og's name for it: json_schema, regex or lark_grammar."""
        return KINDS[self.option]


def request(schema=None, regex: str | None = None, grammar: str | None = None) -> Guidance | None:
    """The guidance of generate()'s `schema=` (a dict, JSON text or a .json file), `regex=` or `grammar=`. Lab 04."""
    given = {name: value for name, value in (("schema", schema), ("regex", regex), ("grammar", grammar))
             if value is not None}
    if not given:
        return None
    if len(given) > 1:
        raise GenerationError(f"Give one of schema=, regex= or grammar=, not {' and '.join(given)}: an answer "
                              "follows one form.")
    if "schema" in given:
        loaded = load_schema(schema)
        text = json.dumps({**loaded, "x-guidance": {**COMPACT, **loaded.get("x-guidance", {})}})
        return Guidance("schema", text, {k: v for k, v in loaded.items() if k != "x-guidance"})
    option, value = next(iter(given.items()))
    if not isinstance(value, str) or not value.strip():
        what = "regular expression" if option == "regex" else "Lark grammar"
        raise GenerationError(f"{option}={value!r}: give the {what} as a non-empty string.")
    return Guidance(option, value)


def load_schema(schema) -> dict:
    """A JSON schema from a dict, JSON text or a path to a .json file, checked with jsonschema. Lab 04."""
    from jsonschema import exceptions, validators

    where = "schema"
    if isinstance(schema, Path) or isinstance(schema, str) and schema.strip().endswith(".json"):
        where = str(schema)
        try:
            schema = Path(schema).read_text(encoding="utf-8")
        except OSError as err:
            raise GenerationError(f"Cannot read the schema file {where}: {err.strerror}. Give the path of a .json "
                                  "file that holds a JSON schema.") from None
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as err:
            raise GenerationError(f"The {where} is not valid JSON ({err.msg} at line {err.lineno}, column "
                                  f"{err.colno}): a JSON schema is a JSON object such as "
                                  '{"type": "object", "properties": {"city": {"type": "string"}}}.') from None
    if not isinstance(schema, dict):
        raise GenerationError(f"The {where} must be a JSON object (a dict), not {type(schema).__name__}.")
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as err:
        path = "/".join(str(p) for p in err.absolute_path) or "the top level"
        raise GenerationError(f"The {where} is not a valid JSON schema: {err.message} (at {path}). See "
                              "https://json-schema.org/understanding-json-schema for the keywords.") from None
    return schema


def shortest_answer(schema: dict):
    """The smallest value `schema` allows (required keys only, empty strings, lowest numbers), or None if unknown.

    Its token count is a floor: an answer cut before it can never be valid. Lab 04."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return min(schema["enum"], key=lambda value: len(json.dumps(value)))
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        found = [shortest_answer(option) for option in options]
        return min((value for value in found if value is not None), key=lambda v: len(json.dumps(v)), default=None)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = min(kind, key=["null", "boolean", "integer", "number", "string", "array", "object"].index)
    if kind == "object" or kind is None and "properties" in schema:
        properties = schema.get("properties", {})
        value = {}
        for key in schema.get("required", []):
            inner = shortest_answer(properties.get(key, {}))
            if inner is None and key in properties:
                return None
            value[key] = inner
        return value
    if kind == "array":
        item = shortest_answer(schema.get("items", {})) if schema.get("minItems") else None
        return [item] * int(schema.get("minItems", 0))
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", float("-inf")), schema.get("maximum", float("inf"))
        return low if low > 0 else high if high < 0 else 0
    if kind == "boolean":
        return False
    return None      # null, or a schema this does not know: no floor


def check_fits(guidance: Guidance | None, tokenizer, max_new_tokens: int) -> None:
    """Refuse a schema whose shortest answer is longer than `max_new_tokens`: it would always be cut. Lab 04."""
    if guidance is None or guidance.schema is None:
        return
    smallest = shortest_answer(guidance.schema)
    if smallest is None:
        return
    text = json.dumps(smallest)
    needed = len(tokenizer.encode(text))
    if needed > max_new_tokens:
        raise GenerationError(f"max_new_tokens={max_new_tokens} cannot hold an answer to this schema: the shortest "
                              f"it allows, {text}, is already {needed} tokens. Raise max_new_tokens (a real answer "
                              "needs room for its values too) or give the schema fewer required keys.")


def check_search(guidance: Guidance | None, search: dict) -> None:
    """Refuse beam search with guidance: og 0.12.2 ignores the constraint there. Lab 04."""
    if guidance is not None and search.get("num_beams", 1) > 1:
        raise GenerationError(f"num_beams={search['num_beams']} with {guidance.option}=: onnxruntime-genai applies "
                              "guidance to greedy search and sampling only (with beams the answer can break the "
                              "form). Leave out num_beams, or drop the guidance.")


def apply(params, guidance: Guidance | None) -> None:
    """`params.set_guidance(kind, text)`, or a clear error where this onnxruntime-genai has none. Lab 04."""
    if guidance is None:
        return
    if not hasattr(params, "set_guidance"):
        import onnxruntime_genai as og

        raise GenerationError(f"onnxruntime-genai {og.__version__} has no guidance (set_guidance came in 0.8, in "
                              "the CPU and CUDA wheels): install the course's pinned version with `make install`.")
    try:
        params.set_guidance(guidance.kind, guidance.text)
    except RuntimeError as err:     # a build without LLGuidance says so here
        reason = str(err).strip().splitlines()[0][:200]
        raise GenerationError(f"This onnxruntime-genai build cannot apply guidance ({reason}): use the CPU wheel "
                              "(`make install`), which has LLGuidance built in.") from None


def compile_error(err: RuntimeError, guidance: Guidance) -> GenerationError:
    """og's grammar error (raised when the generator is created) as a GenerationError naming the option. Lab 04."""
    reason = str(err).strip().replace("Error creating grammar: ", "")
    return GenerationError(f"onnxruntime-genai cannot use this {guidance.option}: {reason}\nFix the "
                           f"{'JSON schema' if guidance.option == 'schema' else guidance.option} and try again.")


class AnswerCut(GenerationError):
    """A guided answer that stopped at max_new_tokens before its form was complete. Lab 04."""

    def __init__(self, message: str, text: str):
        super().__init__(message)
        self.text = text


def parse(guidance: Guidance, text: str, max_new_tokens: int):
    """The answer as a program gets it: a schema's JSON as Python objects (validated), a regex's match. Lab 04.

    Guidance guarantees the form, so an answer without it was cut at `max_new_tokens`: AnswerCut says so."""
    value, problem = check(guidance, text)
    if problem:
        raise AnswerCut(f"The answer stopped at max_new_tokens={max_new_tokens} before its {guidance.option} was "
                        f"complete ({problem}): raise max_new_tokens. The answer so far: {text[:200]!r}", text)
    return value


def check(guidance: Guidance, text: str):
    """(value, None) when `text` has the guided form, else (None, why not); for unguided answers too. Lab 04."""
    if guidance.option == "schema":
        from jsonschema import ValidationError, validate

        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            return None, f"not JSON: {err.msg} at column {err.colno}"
        try:
            validate(value, guidance.schema)
        except ValidationError as err:
            return None, f"JSON, but not the schema's: {err.message}"
        return value, None
    if guidance.option == "regex":
        match = re.fullmatch(guidance.text, text)
        return (match, None) if match else (None, "does not match the regex")
    return text, None
