"""Models: a declarative manifest, verified resumable downloads, migration from Windows drives.

- `downloader`: the self-contained code that runs on the workstation (stdlib + requests).
- `manifest`: entries from the inventory (or a models.yaml), and the convergence check.
- `migrate`: A1111/Forge folder trees into ComfyUI's names, verified, duplicates found by hash.
- `operation`: the pyinfra operation `synced`; `cli`: `genai-models`.
"""
