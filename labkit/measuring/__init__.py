"""Measuring: size, speed, perplexity, answers, memory and peers of what was made; the report.

Imports core, runtime and making."""
