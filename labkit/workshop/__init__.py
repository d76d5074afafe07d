"""The workshop: running the notebooks, exercise checks, plans, the environment check and the CLI.

Imports every layer below it."""
