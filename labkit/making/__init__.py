"""Model making: tiny models, shadows, hub downloads, model-builder builds and the vision export.

Imports core and runtime."""
