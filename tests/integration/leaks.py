"""Hook-leak check shared by the composition tests (imported rootdir-relative, like browser.py)."""

from __future__ import annotations


def all_hooks(model) -> dict[str, tuple[int, int]]:
    """(forward hooks, forward pre-hooks) of every submodule, HookPoints included."""
    out = {}
    for name, mod in model.named_modules():
        n = (len(mod._forward_hooks), len(mod._forward_pre_hooks))
        if n != (0, 0):
            out[name] = n
    return out
