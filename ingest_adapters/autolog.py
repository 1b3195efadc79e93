"""`modeldb.autolog()`: which frameworks exist, and when each one gets patched.

A framework already imported is patched at once. One not imported yet is patched right
after its module is first imported (a post-import hook on `sys.meta_path`), so
`autolog()` itself imports nothing heavy: Keras, torch and transformers take seconds to
import, and Keras must not pick its backend before the user has set KERAS_BACKEND.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from modeldb import InvalidArgument
from modeldb.ingest_adapters import _patch


@dataclass(frozen=True)
class Framework:
    packages: tuple[str, ...]  # top-level imports: any of them installed → the framework is
    triggers: tuple[str, ...]  # modules whose import brings in what gets patched
    adapter: str  # our module; its patch(trigger_module) installs the hooks


_ADAPTERS = "modeldb.ingest_adapters"
FRAMEWORKS: dict[str, Framework] = {
    "sklearn": Framework(("sklearn",), ("sklearn.base",), f"{_ADAPTERS}.autolog_sklearn"),
    "xgboost": Framework(("xgboost",), ("xgboost",), f"{_ADAPTERS}.autolog_xgboost"),
    "lightgbm": Framework(("lightgbm",), ("lightgbm",), f"{_ADAPTERS}.autolog_lightgbm"),
    "keras": Framework(("keras",), ("keras",), f"{_ADAPTERS}.autolog_keras"),
    # Lightning ships the same Trainer twice: `lightning.pytorch` and `pytorch_lightning`.
    "lightning": Framework(("lightning", "pytorch_lightning"),
                           ("lightning.pytorch", "pytorch_lightning"),
                           f"{_ADAPTERS}.autolog_lightning"),
    # transformers.trainer, not transformers: importing the package alone (for a tokenizer,
    # say) must not pull in torch and the Trainer.
    "transformers": Framework(("transformers",), ("transformers.trainer",),
                              f"{_ADAPTERS}.autolog_transformers"),
}


def installed(name: str) -> bool:
    return any(importlib.util.find_spec(p) is not None for p in FRAMEWORKS[name].packages)


def enabled() -> list[str]:
    """The frameworks autolog is on for, in FRAMEWORKS' order."""
    return [name for name in FRAMEWORKS if _patch.config(name) is not None]


def autolog(frameworks: Sequence[str] | None = None, *, log_models: bool = True,
            log_datasets: bool = True, disable: bool = False, silent: bool = False) -> None:
    """See `modeldb.autolog`."""
    if isinstance(frameworks, str):
        frameworks = [frameworks]
    if frameworks is None:
        names = list(FRAMEWORKS) if disable else [n for n in FRAMEWORKS if installed(n)]
    else:
        unknown = [n for n in frameworks if n not in FRAMEWORKS]
        if unknown:
            raise InvalidArgument(f"autolog knows no framework {', '.join(map(repr, unknown))}; "
                                  f"known: {', '.join(FRAMEWORKS)}")
        names = list(dict.fromkeys(frameworks))
    with _patch._lock:
        for name in names:
            if disable:
                _HOOK.forget(name)
                _patch.disable(name)
            else:
                _patch.enable(name, _patch.Config(log_models, log_datasets, silent))
                for trigger in FRAMEWORKS[name].triggers:
                    module = sys.modules.get(trigger)
                    if module is not None:
                        patch_now(name, module)
                    else:
                        _HOOK.watch(trigger, name)


def patch_now(name: str, module: ModuleType) -> None:
    """Install `name`'s hooks on its freshly imported (or already imported) `module`."""
    if _patch.config(name) is None:
        return  # disabled since the hook was set
    with _patch.guard(name):
        adapter = importlib.import_module(FRAMEWORKS[name].adapter)
        adapter.patch(module)


# -- post-import hooks --------------------------------------------------------------------------


class _ImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the other finders, then wraps the
    loader so that the framework is patched right after the module has run."""

    def __init__(self) -> None:
        self.waiting: dict[str, set[str]] = {}  # module → frameworks to patch on its import

    def watch(self, module: str, framework: str) -> None:
        self.waiting.setdefault(module, set()).add(framework)
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def forget(self, framework: str) -> None:
        for module in list(self.waiting):
            self.waiting[module].discard(framework)
            if not self.waiting[module]:
                del self.waiting[module]

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in self.waiting:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader, self.waiting.pop(fullname))
        return spec


class _PatchingLoader(importlib.abc.Loader):
    """The real loader, then the patches. Delegates everything else to the real loader."""

    def __init__(self, loader: Any, frameworks: set[str]) -> None:
        self.loader = loader
        self.frameworks = frameworks

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The module sees its real loader (importlib.resources and friends ask for it).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        for name in sorted(self.frameworks):
            patch_now(name, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


_HOOK = _ImportHook()
