"""Core: folders, the verified cache, profiles, results.json, the course data and measured sizes.

Imports no other layer."""
