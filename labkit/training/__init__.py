"""Training: AWQ with llmcompressor and LoRA with Olive.

Imports core, runtime, making and measuring (AWQ is judged against RTN with the measuring layer)."""
