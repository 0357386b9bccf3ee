"""Stacks: render (render.py) and run (lifecycle.py) ComfyUI, Forge and user compose stacks."""

from .errors import StackError
from .gpu_order import cuda_index
from .render import ImageBuild, RenderedFile, RenderedStack, config_hash, render_stack

__all__ = ["ImageBuild", "RenderedFile", "RenderedStack", "StackError", "config_hash",
           "cuda_index", "render_stack"]
