"""Judge answers by what a person reads, not by loss: did the model learn its job? Labs 03 and 04.

- a travel answer is *about the city asked* when it names that city, and *states its fact* when it
  contains the distinctive words of that city's entry for the topic asked (its first dish, its sight,
  its daily budget, ... — the `fact` field of `data/travel/paraphrase.jsonl`);
- a brief answer is *one sentence* when it has exactly one sentence-ending mark;
- a general answer is *of the corpus's kind* when it ends a sentence and nearly all its words occur in
  the pre-training corpus.

Plain whole-word checks, on purpose: an attendee can verify every verdict by reading the answer
(a garbled splice such as "Lisbonoma" does not count as naming Lisbon).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..core import data
from ..core.errors import InputError

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
# Enough new tokens for the longest training answer (48 tokens) to end: a verdict on a cut-off answer would
# count sentences that were never finished.
ANSWER_TOKENS = 64
_WORD = re.compile(r"[A-Za-z]+")


def _says(answer: str, words: str) -> bool:
    """`words` in the answer as whole words, case-insensitive: "Lisbonoma" (a garbled splice) is not "Lisbon"."""
    return re.search(rf"(?<!\w){re.escape(words)}(?!\w)", answer, re.IGNORECASE) is not None


def names_city(answer: str, city: str) -> bool:
    """True when the answer names the city asked about, as a whole word (case-insensitive). Lab 03."""
    return _says(answer, city)


@lru_cache(maxsize=1)
def course_cities() -> tuple[str, ...]:
    """The course's cities, longest name first (so "Quebec City" wins over a shorter name inside it). Lab 04."""
    return tuple(sorted({row["city"] for row in data.paraphrases()}, key=len, reverse=True))


def city_in(text: str) -> str | None:
    """The first course city a text names (None when it names none). Lab 04."""
    found = [(text.lower().find(c.lower()), c) for c in course_cities() if _says(text, c)]
    return min(found)[1] if found else None


def states_fact(answer: str, fact: str) -> bool:
    """True when the answer contains the fact's distinctive words, whole (case-insensitive). Lab 03."""
    return _says(answer, fact)


def sentences(answer: str) -> int:
    """Number of sentence-ending marks (., ! or ? followed by a space or the end). Lab 04."""
    return len(_SENTENCE_END.findall(answer.strip()))


@lru_cache(maxsize=1)
def _corpus_vocabulary() -> frozenset[str]:
    """Every word of the pre-training corpus, lower-cased. Lab 00."""
    return frozenset(w.lower() for w in _WORD.findall(data.corpus("train")))


def _corpus_word_share(answer: str) -> float:
    """Share of the answer's words that occur in the pre-training corpus (0 without words). Lab 00."""
    words = [w.lower() for w in _WORD.findall(answer)]
    return sum(w in _corpus_vocabulary() for w in words) / len(words) if words else 0.0


def is_corpus_sentence(answer: str, min_share: float = 0.95) -> bool:
    """A sentence of the corpus's kind: it ends a sentence and its words are the corpus's words. Lab 00."""
    return sentences(answer) >= 1 and _corpus_word_share(answer) >= min_share


@dataclass(frozen=True)
class TravelRates:
    """Shares of travel answers that name the city asked and that state its fact. Lab 03."""

    city_named: float
    fact_stated: float
    questions: int

    def as_dict(self) -> dict:
        return {"city_named": self.city_named, "fact_stated": self.fact_stated, "questions": self.questions}


def travel_rates(rows: list[dict], answers: list[str]) -> TravelRates:
    """Score answers to `rows` (dicts with `city` and `fact`, as `data.paraphrases()` returns). Lab 03."""
    if len(rows) != len(answers) or not rows:
        raise InputError(f"need one answer per question, got {len(answers)} answers for {len(rows)} questions")
    named = sum(names_city(a, r["city"]) for r, a in zip(rows, answers))
    facts = sum(states_fact(a, r["fact"]) for r, a in zip(rows, answers))
    return TravelRates(named / len(rows), facts / len(rows), len(rows))


def one_sentence_share(answers: list[str]) -> float:
    """Share of answers with exactly one sentence-ending mark. Lab 04 (the brief adapter)."""
    return sum(sentences(a) == 1 for a in answers) / len(answers)


def multi_sentence_share(answers: list[str]) -> float:
    """Share of answers with two or more sentence-ending marks. Lab 04 (the travel adapter)."""
    return sum(sentences(a) >= 2 for a in answers) / len(answers)


def ask_all(model_dir, questions: list[dict], adapters: dict, max_new_tokens: int = ANSWER_TOKENS,
            progress: bool = True):
    """Every question answered under every adapter (None = base model), greedy, through onnxruntime-genai.

    Returns a table (prompt, city, the fact a right answer states, one column per adapter) and each adapter's
    `TravelRates`. Lab 03.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..runtime import generate

    table = pd.DataFrame({"prompt": [q["prompt"] for q in questions], "city": [q["city"] for q in questions],
                          "fact": [q.get("fact", "") for q in questions]})
    rates = {}
    for name, adapter in adapters.items():
        said = [generate.generate(model_dir, q["prompt"], max_new_tokens=max_new_tokens, adapter=adapter).text.strip()
                for q in tqdm(questions, desc=f"answering as {name}", disable=not progress)]
        table[name] = said
        rates[name] = travel_rates(questions, said)
    return table, rates


@dataclass(frozen=True)
class FollowupRates:
    """Two-turn chats: how often the first answer names the city, and the follow-up keeps it. Lab 04."""

    first_names_city: float
    followup_keeps_city: float
    followup_states_fact: float
    chats: int

    def as_dict(self) -> dict:
        return {"first_names_city": self.first_names_city, "followup_keeps_city": self.followup_keeps_city,
                "followup_states_fact": self.followup_states_fact, "chats": self.chats}


def ask_followups(model_dir, chats: list[dict], adapter, system: str | None = None,
                  max_new_tokens: int = ANSWER_TOKENS, progress: bool = True):
    """Each chat's two turns (`prompt`, then `followup`) through `generate.Chat`, greedy. Lab 04.

    Returns a table (city, both questions, both answers, the verdicts) and the `FollowupRates`.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..runtime import generate

    if not chats:
        raise InputError("no chats to ask: data.followups() returns them")
    rows = []
    for c in tqdm(chats, desc="two-turn chats", disable=not progress):
        chat = generate.Chat(model_dir, system=system, adapter=adapter, max_new_tokens=max_new_tokens)
        first, second = chat.say(c["prompt"]).text.strip(), chat.say(c["followup"]).text.strip()
        rows.append({"city": c["city"], "question": c["prompt"], "answer": first, "follow-up": c["followup"],
                     "second answer": second, "first names city": names_city(first, c["city"]),
                     "follow-up keeps city": names_city(second, c["city"]),
                     "follow-up states fact": states_fact(second, c["fact"])})
    table = pd.DataFrame(rows)
    rates = FollowupRates(float(table["first names city"].mean()), float(table["follow-up keeps city"].mean()),
                          float(table["follow-up states fact"].mean()), len(table))
    return table, rates


@dataclass(frozen=True)
class StructuredRates:
    """JSON answers: how often they parse and fit the schema, and how often their fields are right. Lab 04."""

    valid: float
    city_right: float
    country_right: float
    fact_stated: float
    tokens_per_second: float
    answers: int

    def as_dict(self) -> dict:
        return {"valid": self.valid, "city_right": self.city_right, "country_right": self.country_right,
                "fact_stated": self.fact_stated, "tokens_per_second": self.tokens_per_second, "answers": self.answers}


def ask_structured(model_dir, questions: list[dict], adapter, schema: dict, guided: bool, system: str | None = None,
                   max_new_tokens: int = ANSWER_TOKENS, progress: bool = True, **search):
    """Each question answered for a program, with or without guidance to `schema` (greedy unless `search` says). Lab 04.

    `schema` is the travel answer's: `city`, `country` and `answer`. With `random_seed`, question i samples with
    seed `random_seed + i`. An answer is *valid* when it parses as JSON and fits the schema; its `city` is *right*
    when it is the city asked, its `country` when it is that city's, and its `answer` states the fact asked.
    Returns a table and the `StructuredRates` (decode tokens/s included)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from ..runtime import generate, guidance

    form = guidance.request(schema=schema)
    facts = data.cities()
    rows, tokens, seconds = [], 0, 0.0
    seed = search.pop("random_seed", None)
    for i, q in enumerate(tqdm(questions, desc="JSON answers" + (" (guided)" if guided else ""), disable=not progress)):
        # Sampled: each question its own seed (still reproducible). One seed for all repeats one stream of random
        # draws: where it draws a rare token, it draws it at that step of every answer.
        seeded = {} if seed is None else {"random_seed": (seed + i) % 2**31}
        try:
            reply = generate.generate(model_dir, q["prompt"], max_new_tokens=max_new_tokens, adapter=adapter,
                                      system=system, schema=schema if guided else None, **search, **seeded)
            text = reply.text
            tokens, seconds = tokens + reply.new_tokens - 1, seconds + reply.seconds - reply.time_to_first_token
        except guidance.AnswerCut as cut:       # counted as it is: not valid
            text = cut.text
        value, problem = guidance.check(form, text.strip())
        fields = value if isinstance(value, dict) else {}
        rows.append({"question": q["prompt"], "answer": text.strip(), "valid": problem is None,
                     "why not": problem or "",
                     "city right": str(fields.get("city", "")).strip().lower() == q["city"].lower(),
                     "country right": str(fields.get("country", "")).strip().lower()
                     == facts[q["city"]]["country"].lower(),
                     "fact stated": states_fact(str(fields.get("answer", "")), q["fact"])})
    table = pd.DataFrame(rows)
    rates = StructuredRates(*(float(table[c].mean()) for c in ("valid", "city right", "country right", "fact stated")),
                            tokens / seconds if seconds else float("nan"), len(table))
    return table, rates


def verdicts(table, name: str):
    """`ask_all`'s table for one adapter, with its verdict per answer: city named, fact stated. Lab 03."""
    out = table[["prompt", "fact", name]].rename(columns={name: f"{name} answer"})
    out["city named"] = [names_city(a, c) for a, c in zip(table[name], table["city"])]
    out["fact stated"] = [states_fact(a, f) for a, f in zip(table[name], table["fact"])]
    return out


def misses(questions: list[dict], answers: list[str]) -> dict[str, int]:
    """The answers that do not state the fact asked, by kind: a fact of the city asked, but for another topic
    (its best season, asked about its food), or anything else. Lab 03."""
    facts: dict[str, set[str]] = {}
    for row in data.paraphrases():
        facts.setdefault(row["city"], set()).add(row["fact"])
    missed = [(q, a) for q, a in zip(questions, answers) if not states_fact(a, q["fact"])]
    other_topic = sum(any(states_fact(a, f) for f in facts.get(q["city"], ())) for q, a in missed)
    return {"missed": len(missed), "another topic of the city asked": other_topic,
            "anything else": len(missed) - other_topic}


def rates_table(rates: dict[str, TravelRates]):
    """One row per adapter: the share of answers naming the city and stating its fact. Lab 03."""
    import pandas as pd

    return pd.DataFrame([{"city named": r.city_named, "fact stated": r.fact_stated, "questions": r.questions}
                         for r in rates.values()], index=list(rates))    # row-wise: the count stays a whole number


def plot_rates(rates: dict[str, TravelRates]):
    """Grouped bars: city named / fact stated, per adapter. Lab 03."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(rates)
    width = 0.35
    for i, (label, field) in enumerate([("city named", "city_named"), ("fact stated", "fact_stated")]):
        values = [getattr(rates[n], field) for n in names]
        bars = ax.bar([x + (i - 0.5) * width for x in range(len(names))], values, width, label=label)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set(ylim=(0, 1.1), ylabel="share of answers",
           title=f"Paraphrased travel questions ({next(iter(rates.values())).questions})")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


_STRUCTURED = [("valid", "valid"), ("city right", "city_right"), ("country right", "country_right"),
               ("fact stated", "fact_stated")]


def structured_table(rates: dict[str, StructuredRates]):
    """One row per way of asking (with / without guidance): the shares of `ask_structured` and tokens/s. Lab 04."""
    import pandas as pd

    # Shares as text ("75%"), not a Styler: a DataFrame reads the same in JupyterLab, in papermill's output and in
    # a terminal, where a Styler shows only its type and address.
    return pd.DataFrame([{**{label: f"{getattr(r, field):.0%}" for label, field in _STRUCTURED},
                          "decode tok/s": round(r.tokens_per_second), "answers": r.answers} for r in rates.values()],
                        index=list(rates))


def plot_structured(rates: dict[str, StructuredRates]):
    """Grouped bars: valid / city / country / fact, with and without guidance. Lab 04."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    names = list(rates)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [getattr(rates[name], field) for _, field in _STRUCTURED]
        bars = ax.bar([x + (i - (len(names) - 1) / 2) * width for x in range(len(_STRUCTURED))], values, width,
                      label=name)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8)
    ax.set_xticks(range(len(_STRUCTURED)), [label for label, _ in _STRUCTURED])
    ax.set(ylim=(0, 1.15), ylabel="share of answers",
           title=f"JSON answers to paraphrased travel questions ({next(iter(rates.values())).answers})")
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return fig
