"""An ipywidgets chat panel for JupyterLab. Lab 04.

A prompt box, a Send button, a streaming answer area, sliders for temperature / top_p / max
tokens, a dropdown to pick the adapter (the first one given until changed, or none) and, given a JSON
schema, a "JSON" box that makes every answer follow it (og's guidance). Built on
`labkit.generate.Chat`, so the panel keeps the conversation. Everything is an ordinary widget
attribute, so tests (and curious attendees) can drive it from code: `panel.prompt.value = "Hi"; panel.send.click()`.
"""

from __future__ import annotations

from pathlib import Path

from . import generate, inputs


class ChatPanel:
    """The lab 04 chat panel; `display(panel.widget)` shows it. Lab 04."""

    def __init__(self, model_dir: str | Path, adapters: dict[str, str | Path | None] | None = None,
                 system: str | None = None, schema: dict | None = None):
        import ipywidgets as w

        self.model_dir, self.system, self.schema = model_dir, system, schema
        # The first adapter given is the panel's default (lab 04: the travel adapter); the base model stays a choice.
        self.adapters = {**(adapters or {}), "none (base model)": None}
        self.prompt = w.Text(placeholder="Ask a travel question…", layout=w.Layout(width="70%"))
        self.send = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.reset = w.Button(description="New chat", icon="refresh")
        label = {"description_width": "initial"}    # the whole label, never cut ("temperat…")
        # Greedy until the attendee ticks "sample": the course's tiny model drifts within a few sampled tokens.
        self.sample = w.Checkbox(value=False, description="sample (temperature, top_p)", style=label)
        self.temperature = w.FloatSlider(value=0.7, min=0.1, max=1.5, step=0.05, description="temperature",
                                         style=label)
        self.top_p = w.FloatSlider(value=0.9, min=0.05, max=1.0, step=0.05, description="top_p", style=label)
        self.max_tokens = w.IntSlider(value=64, min=8, max=256, step=8, description="max tokens", style=label)
        self.adapter = w.Dropdown(options=list(self.adapters), description="adapter", style=label)
        self.json = w.Checkbox(value=False, description="JSON (answers follow the schema)", style=label,
                               disabled=schema is None)
        # Enabled, so the text is black on white (a disabled textarea is greyed out and hard to read).
        self.answer = w.Textarea(placeholder="The conversation appears here, token by token.",
                                 layout=w.Layout(width="100%", height="220px"))
        self.status = w.HTML()
        self.send.on_click(self._on_send)
        self.reset.on_click(self._on_reset)
        self.adapter.observe(self._on_reset, names="value")
        self.chat = self._new_chat()
        self.widget = w.VBox([w.HBox([self.prompt, self.send, self.reset]),
                              w.HBox([self.sample, self.temperature, self.top_p]),
                              w.HBox([self.max_tokens, self.adapter, self.json]),
                              self.answer, self.status])

    def _new_chat(self) -> generate.Chat:
        return generate.Chat(self.model_dir, system=self.system, adapter=self.adapters[self.adapter.value])

    def _on_reset(self, *_):
        self.chat = self._new_chat()
        self.answer.value = ""
        self.status.value = "new conversation"

    def _on_send(self, *_):
        message = self.prompt.value.strip()
        if not message:
            self.status.value = "type a question first"
            return
        self.prompt.value = ""
        self.chat.max_new_tokens = self.max_tokens.value
        sampling = {"do_sample": True, "temperature": self.temperature.value, "top_p": self.top_p.value}
        self.chat.search = inputs.check_search_options(**(sampling if self.sample.value else {}))
        self.chat.schema = self.schema if self.json.value else None
        self.answer.value += f"you: {message}\nmodel: "

        def stream(piece: str):
            self.answer.value += piece

        try:
            reply = self.chat.say(message, on_token=stream)
        except generate.GenerationError as err:
            self.status.value = f"<b>error:</b> {err}"
            return
        self.answer.value += "\n\n"
        self.status.value = (f"{reply.new_tokens} tokens · first after {reply.time_to_first_token * 1000:.0f} ms · "
                             f"{reply.decode_tokens_per_second:.0f} tok/s")
