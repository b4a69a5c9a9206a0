"""``Component``: the one base of every hook-based tool, and ``attach_all`` to combine them.

A component declares its TransformerLens hooks (``_fwd_hooks``) and, if it needs them, torch
module hooks (``_module_hooks``: e.g. block pre-hooks that see the KV cache). ``attach`` and
:func:`attach_all` are written once here: they build (and so validate) every hook first, reset the
components if asked, install the hooks, and remove every one of them on exit or exception.

Ordering: components are installed by ascending ``hook_order`` (stable). Hooks on the same hook
point run in installation order, so a component with a higher ``hook_order`` sees the others'
edits: :class:`~tl_thinktok.interventions.recycle.RepresentationRecycling` has the highest
(innermost), so its logits hook sees a ban's ``-inf`` logits when it picks its candidate.

Example:
    >>> from tl_thinktok.interventions import attach_all          # doctest: +SKIP
    >>> with attach_all(model, rr, ban, probe):                   # doctest: +SKIP
    ...     out = model.generate(tokens, max_new_tokens=32, do_sample=False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from tl_thinktok import hosts
from tl_thinktok._validate import check_bool

__all__ = ["Component", "ModuleHook", "attach_all"]

C = TypeVar("C", bound="Component")


@dataclass(frozen=True)
class ModuleHook:
    """A torch hook a component installs on a submodule while attached.

    Attributes:
        module: the module (e.g. ``model.blocks[3]``).
        fn: the hook function (torch's signature for the kind below).
        pre: forward pre-hook (True) or forward hook (False).
        with_kwargs: the hook receives the call's keyword arguments.
    """

    module: torch.nn.Module
    fn: Callable
    pre: bool = True
    with_kwargs: bool = True

    def register(self) -> Any:
        """Install the hook; returns torch's removable handle."""
        if self.pre:
            return self.module.register_forward_pre_hook(self.fn, with_kwargs=self.with_kwargs)
        return self.module.register_forward_hook(self.fn, with_kwargs=self.with_kwargs)


class Component:
    """Base of the tl-thinktok components (recorders, readers and interventions).

    Subclasses implement :meth:`_fwd_hooks` (and :meth:`_module_hooks`, :meth:`reset`,
    :meth:`_on_detach` when they need them) and set the class attributes below.

    Attributes:
        requires_attach: True if the component cannot run from its TransformerLens hooks alone
            (it also needs module hooks): :meth:`fwd_hooks` then refuses at once.
        hook_order: installation rank in :func:`attach_all` (higher = later = innermost).

    Example:
        >>> class Count(Component):
        ...     def __init__(self):
        ...         self.n = 0
        ...     def reset(self):
        ...         self.n = 0
        ...     def _fwd_hooks(self, model):
        ...         return [(hosts.logits_name(model), self._hook)]
        ...     def _hook(self, logits, hook):
        ...         self.n += 1
        >>> with Count().attach(model) as c:                     # doctest: +SKIP
        ...     model(tokens)
    """

    requires_attach: ClassVar[bool] = False
    hook_order: ClassVar[int] = 0

    # ------------------------------------------------------------------ to override
    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """The TransformerLens hooks ``[(hook_name, fn), ...]``; validate ``model`` here."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fwd_hooks")

    def _module_hooks(self, model: Any) -> list[ModuleHook]:
        """Torch module hooks installed by ``attach`` besides the TL hooks (default: none)."""
        return []

    def reset(self) -> None:
        """Forget recorded state (``attach`` calls it by default). Default: nothing to forget."""

    def _on_detach(self) -> None:
        """Called after the hooks were removed (default: nothing)."""

    # ------------------------------------------------------------------ written once
    def fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """The component's TransformerLens hooks, for ``model.hooks(fwd_hooks=...)``.

        Raises:
            RuntimeError: the component ``requires_attach`` (its TL hooks alone would fail
                mid-``generate``): use :meth:`attach` or :func:`attach_all`.
        """
        if self.requires_attach:
            raise RuntimeError(
                f"{type(self).__name__} cannot run from fwd_hooks alone (it also needs torch "
                f"module hooks, e.g. to see the KV cache): use `with component.attach(model):` "
                "or `with attach_all(model, ...):`"
            )
        return self._fwd_hooks(model)

    @contextmanager
    def attach(self: C, model: Any, *, reset: bool = True) -> Iterator[C]:
        """Context manager: install this component's hooks; removes exactly them on exit/error.

        Args:
            model: a HookedTransformer or TransformerBridge.
            reset: call :meth:`reset` first (after validation, before any hook is installed).

        Example:
            >>> with probe.attach(model):                               # doctest: +SKIP
            ...     model.generate(tokens, max_new_tokens=8, do_sample=False)
        """
        with attach_all(model, self, reset=reset):
            yield self


@contextmanager
def attach_all(
    model: Any, *components: Component, reset: bool = True
) -> Iterator[tuple[Component, ...]]:
    """Attach several components at once, in the right order; remove every hook on exit/error.

    Components are installed by ascending ``hook_order`` (stable: equal ranks keep the given
    order), so Representation Recycling is always innermost and sees the other components' edited
    logits. All hooks are built (validated) before any is installed: a bad component leaves the
    model untouched.

    Args:
        model: a HookedTransformer or TransformerBridge.
        *components: distinct :class:`Component` instances.
        reset: reset every component first.

    Yields:
        The components, in the order given.

    Raises:
        TypeError: an argument is not a Component, or ``model`` is not a supported host.
        ValueError: the same component is given twice.
        RuntimeError: a component is already attached.

    Example:
        >>> parts = SuppressTokens([5]), MIProbe(-1)                  # doctest: +SKIP
        >>> with attach_all(model, *parts) as (ban, probe):           # doctest: +SKIP
        ...     model.generate(tokens, max_new_tokens=8, do_sample=False)
    """
    hosts.check_host(model)
    check_bool("reset", reset)
    for c in components:
        if not isinstance(c, Component):
            raise TypeError(f"attach_all takes Component instances, got {type(c).__name__}")
    if len({id(c) for c in components}) != len(components):
        raise ValueError("the same component was given twice")
    busy = [c for c in components if getattr(c, "_thinktok_attached", False)]
    if busy:
        raise RuntimeError(f"{busy[0]!r} is already attached; detach it first")
    ordered = sorted(components, key=lambda c: c.hook_order)
    fwd: list[tuple[str, Callable]] = []
    mod: list[ModuleHook] = []
    for c in ordered:  # build (= validate) everything before touching the model
        fwd += c._fwd_hooks(model)
        mod += c._module_hooks(model)
    if reset:
        for c in ordered:
            c.reset()
    handles: list[Any] = []
    try:
        for c in ordered:
            c._thinktok_attached = True
        for h in mod:
            handles.append(h.register())
        with model.hooks(fwd_hooks=fwd):
            yield components
    finally:
        for handle in reversed(handles):
            handle.remove()
        for c in ordered:
            c._thinktok_attached = False
            c._on_detach()
