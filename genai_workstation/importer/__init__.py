"""genai-import: carry a hand-kept compose setup and its custom nodes into the inventory."""
