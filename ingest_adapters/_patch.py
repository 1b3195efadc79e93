"""What every autolog hook shares: its settings, `safe_patch`, `guard`, and the run it logs to.

The rule, after MLflow's `safe_patch`: tracking must never break training. An error in
the hook is logged (once per framework and error type, then at DEBUG) and training goes on;
an error raised by the user's training code propagates unchanged. MODELDB_AUTOLOG_STRICT=1
turns hook errors into exceptions, so tests see them.

Whether an autolog'd training is already running lives in a contextvar, so concurrent
trainings in different threads are each tracked; the settings are per process, like the
patches themselves. (A training that fans out to threads — joblib's threading backend —
therefore logs its inner fits as runs of their own; processes, the default, do not.)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import modeldb

logger = logging.getLogger("modeldb.autolog")
T = TypeVar("T")

STRICT_ENV = "MODELDB_AUTOLOG_STRICT"  # "1": hook errors raise (tests)
MARK = "__modeldb_autolog__"  # set on our wrappers: the framework that patched them


@dataclass(frozen=True)
class Config:
    """What `modeldb.autolog(...)` asked of one framework."""

    log_models: bool = True
    log_datasets: bool = True
    silent: bool = False


@dataclass(frozen=True)
class _Patch:
    owner: Any
    name: str
    had_own: bool  # the attribute was in owner's own __dict__ (else inherited)
    previous: Any


_lock = threading.RLock()
_configs: dict[str, Config] = {}  # the enabled frameworks
_patches: dict[str, list[_Patch]] = {}
_warned: set[tuple[str, str]] = set()
# True while an autolog'd training runs in this context: a Pipeline's inner fits, a
# wrapper's inner train(), GridSearchCV's refits are part of the outer one, not runs.
_training: contextvars.ContextVar[bool] = contextvars.ContextVar("modeldb_autolog", default=False)


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


def config(framework: str) -> Config | None:
    """The settings of an enabled framework; None when it is disabled."""
    return _configs.get(framework)


def enable(framework: str, settings: Config) -> None:
    with _lock:
        _configs[framework] = settings


def disable(framework: str) -> None:
    """Stop tracking `framework` and put back every attribute it patched."""
    with _lock:
        _configs.pop(framework, None)
        for patch in reversed(_patches.pop(framework, [])):
            if patch.had_own:
                setattr(patch.owner, patch.name, patch.previous)
            else:
                with contextlib.suppress(AttributeError):
                    delattr(patch.owner, patch.name)


def report(framework: str, exc: BaseException, *, may_raise: bool = True) -> None:
    """A hook failed: say so once per framework and error type, or raise in strict mode."""
    if may_raise and strict():
        raise exc
    settings = _configs.get(framework, Config())
    topic = (framework, type(exc).__name__)
    first = topic not in _warned
    _warned.add(topic)
    # logging, not warnings.warn: a test suite or app that turns warnings into errors
    # would otherwise turn a tracking hiccup into a failed training.
    level = logging.WARNING if first and not settings.silent else logging.DEBUG
    logger.log(level, "modeldb.autolog(%s): tracking failed, training goes on: %r%s", framework,
               exc, "" if level == logging.DEBUG else " (further such errors are logged at DEBUG)",
               exc_info=level == logging.DEBUG)


@contextlib.contextmanager
def guard(framework: str) -> Iterator[None]:
    """Run a piece of tracking code; its errors are reported, not raised (see report).

    Framework callbacks wrap their bodies in it too: an error escaping a callback would
    surface from the framework's fit as if the user's code had failed."""
    try:
        yield
    except Exception as exc:  # BaseException (KeyboardInterrupt …) goes through
        report(framework, exc)


def safe_patch(framework: str, owner: Any, name: str,
               hook: Callable[..., Any]) -> None:
    """Replace `owner.name` by a wrapper that calls `hook(original, *args, **kwargs)`.

    The hook must call `original` (the training itself) once. Errors raised by original
    propagate unchanged. Any other error escaping the hook is reported; if training had
    not run yet it runs now, untracked, so a broken hook costs the tracking, not the model.
    The wrapper does nothing but call original when the framework is disabled or when an
    autolog'd training is already running (the outermost call is the one tracked).
    """
    with _lock:
        # A class's own function, not a bound method; inherited: the base's, looked up now.
        own = owner.__dict__.get(name) if isinstance(owner, type) else None
        original: Callable[..., Any] = own if own is not None else getattr(owner, name)
        if getattr(original, MARK, None) == framework:
            return  # already ours

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _training.get() or framework not in _configs:
                return original(*args, **kwargs)
            token = _training.set(True)
            try:
                return _call_hook(framework, hook, original, args, kwargs)
            finally:
                _training.reset(token)

        setattr(wrapper, MARK, framework)
        replace(framework, owner, name, wrapper)


def replace(framework: str, owner: Any, name: str, value: Any) -> None:
    """Set `owner.name`, remembering what was there so that disable() puts it back."""
    with _lock:
        had_own = name in owner.__dict__ if isinstance(owner, type) else hasattr(owner, name)
        previous = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        setattr(owner, name, value)
        _patches.setdefault(framework, []).append(_Patch(owner, name, had_own, previous))


class _Original:
    """`original`, as the hook sees it: remembers whether it ran, and what it raised."""

    __slots__ = ("called", "error", "function", "result")

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.called = False
        self.result: Any = None
        self.error: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.called = True
        try:
            self.result = self.function(*args, **kwargs)
        except BaseException as exc:
            self.error = exc
            raise
        return self.result


def _call_hook(framework: str, hook: Callable[..., Any], function: Callable[..., Any],
               args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    original = _Original(function)
    try:
        return hook(original, *args, **kwargs)
    except Exception as exc:
        error = original.error
        if error is None:
            report(framework, exc)
            return original.result if original.called else function(*args, **kwargs)
        if exc is error:
            raise
        # The hook failed while cleaning up after the user's error: that one matters more,
        # even in strict mode.
        report(framework, exc, may_raise=False)
        raise error from error.__cause__  # `from` keeps the hook's error out of its context


# -- the run a training logs to ---------------------------------------------------------------


@contextlib.contextmanager
def training_run(framework: str, name: str | None) -> Iterator[modeldb.Run | None]:
    """The active run, or a new one (source "autolog:<framework>") for the length of the
    block: FINISHED when it ends, FAILED when training raised, KILLED on KeyboardInterrupt.

    None when the run cannot be started: then the caller trains without tracking.
    """
    active = modeldb.active_run()
    if active is not None:
        yield active
        return
    run = None
    with guard(framework):
        run = modeldb.start_run(name=name, source=f"autolog:{framework}")
    if run is None:
        yield None
        return
    try:
        yield run
    except BaseException as exc:
        with guard(framework):
            run.end("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    with guard(framework):
        run.end("FINISHED")
