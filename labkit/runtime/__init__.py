"""Runtime: onnxruntime-genai generation (the one token loop), chat, the chat panel and image prompts.

Imports core."""
