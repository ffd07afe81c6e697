"""Functions by name, with their signatures, and the binding of a call's arguments.

Binding follows the Rust registry's rules and words (a call's `args` fill parameters in
order, `kwargs` the rest by name): "takes 2 positional arguments but 3 were given", "got
an unexpected keyword argument 'x'", "got multiple values for argument 'x'", "missing
required argument 'x'", and for parameters annotated with a plain type (int, float, str,
bytes, bool, list, dict, datetime) "argument 1: expected an integer, got a string". Any
of these is BAD_ARGUMENTS and the function does not run; what the function raises is
FUNCTION_ERROR.
"""

from __future__ import annotations

import datetime
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from .errors import BadArguments

_P = inspect.Parameter

_EXPECTED = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bytes: "binary data",
    bool: "a boolean",
    list: "an array",
    tuple: "an array",
    dict: "a map",
    datetime.datetime: "a timestamp",
}


def describe_value(value: Any) -> str:
    """A value's type in the caller's terms, as the Rust registry words it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, datetime.datetime):
        return "a timestamp"
    return type(value).__name__


def _fits(value: Any, annotation: Any) -> bool:
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, annotation)


@dataclass
class Function:
    """A registered function and what the worker announces of it."""

    name: str
    fn: Callable[..., Any]
    doc: str = ""
    signature: str = ""
    retry_safe: bool = False
    inline: bool = False
    hedge_ms: Optional[int] = None
    is_async: bool = False
    _parameters: List[inspect.Parameter] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        try:
            sig = inspect.signature(self.fn)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            self._parameters = list(sig.parameters.values())
        if not self.signature:
            self.signature = f"{self.name}{sig}" if sig is not None else f"{self.name}(...)"
        if not self.doc:
            doc = (inspect.getdoc(self.fn) or "").strip()
            self.doc = doc.split("\n\n")[0].replace("\n", " ")
        self.is_async = inspect.iscoroutinefunction(self.fn)

    def announcement(self) -> Dict[str, Any]:
        """This function's entry in READY."""
        entry: Dict[str, Any] = {"name": self.name, "doc": self.doc, "signature": self.signature}
        if self.retry_safe:
            entry["retry_safe"] = True
            if self.hedge_ms is not None:
                entry["hedge_ms"] = self.hedge_ms
        if self.inline:
            entry["inline"] = True
        return entry

    def bind(self, args: Any, kwargs: Any) -> Tuple[List[Any], Dict[str, Any]]:
        """Checks a call's arguments against the parameters; raises BadArguments."""
        name = self.name
        if args is None:
            args = []
        if kwargs is None:
            kwargs = {}
        if not isinstance(args, list):
            raise BadArguments(f"{name}: \"args\" is not an array")
        if not isinstance(kwargs, dict):
            raise BadArguments(f"{name}: \"kwargs\" is not a map")
        for key in kwargs:
            if not isinstance(key, str):
                raise BadArguments(f"{name}: keyword argument names must be strings")
        if not self._parameters and (args or kwargs):
            # A callable whose signature Python cannot read: pass everything through.
            return args, kwargs
        positional = [p for p in self._parameters if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
        var_positional = any(p.kind == _P.VAR_POSITIONAL for p in self._parameters)
        var_keyword = any(p.kind == _P.VAR_KEYWORD for p in self._parameters)
        if len(args) > len(positional) and not var_positional:
            required = sum(1 for p in positional if p.default is _P.empty)
            most = len(positional)
            takes = f"takes {most}" if required == most else f"takes at most {most}"
            raise BadArguments(
                f"{name}: {takes} positional argument{'s' if most != 1 else ''} but "
                f"{_given(len(args))}"
            )
        by_name = {p.name: p for p in self._parameters if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)}
        filled = {p.name for p in positional[:len(args)]}
        for key in kwargs:
            if key in filled:
                raise BadArguments(f"{name}: got multiple values for argument '{key}'")
            if key not in by_name and not var_keyword:
                raise BadArguments(f"{name}: got an unexpected keyword argument '{key}'")
        for p in self._parameters:
            if p.default is not _P.empty or p.kind in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD):
                continue
            if p.name not in filled and p.name not in kwargs:
                raise BadArguments(f"{name}: missing required argument '{p.name}'")
        for index, (p, value) in enumerate(zip(positional, args), start=1):
            self._check_type(p, value, f"argument {index}")
        for key, value in kwargs.items():
            p = by_name.get(key)
            if p is not None:
                self._check_type(p, value, f"argument '{key}'")
        return args, kwargs

    def _check_type(self, p: inspect.Parameter, value: Any, where: str) -> None:
        annotation = p.annotation
        if isinstance(annotation, str):  # from __future__ import annotations
            annotation = {"int": int, "float": float, "str": str, "bytes": bytes, "bool": bool,
                          "list": list, "dict": dict, "tuple": tuple}.get(annotation, _P.empty)
        expected = _EXPECTED.get(annotation) if isinstance(annotation, type) else None
        if expected is None:
            return
        if value is None and p.default is None:
            return  # `x: int = None`
        if not _fits(value, annotation):
            raise BadArguments(f"{self.name}: {where}: expected {expected}, got {describe_value(value)}")


def _given(n: int) -> str:
    return "1 was given" if n == 1 else f"{n} were given"


_RESERVED = "system."


class Registry:
    """Functions by name. Register with the `function` decorator; nest with `mount`.

        registry = Registry()

        @registry.function
        def add(a: int, b: int) -> int:
            "Adds two integers."
            return a + b

        @registry.function("math.mul", retry_safe=True)
        def multiply(a: float, b: float) -> float: ...
    """

    def __init__(self) -> None:
        self._functions: Dict[str, Function] = {}

    def function(self, name_or_fn: Union[str, Callable[..., Any], None] = None, *,
                 name: Optional[str] = None, doc: Optional[str] = None,
                 retry_safe: bool = False, inline: bool = False,
                 hedge_ms: Optional[int] = None) -> Any:
        """Registers a function under its own name or the one given. `retry_safe`: running
        it twice is harmless (the broker re-sends calls of a lost worker); `inline`: quick
        and non-blocking, run at once on the worker's socket thread; `hedge_ms` (with
        `retry_safe`): a call still running after that many ms gets a second attempt on
        another worker, the first answer wins."""
        if callable(name_or_fn):
            return self.add(name_or_fn.__name__, name_or_fn)
        given = name_or_fn if isinstance(name_or_fn, str) else name

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(given or fn.__name__, fn, doc=doc, retry_safe=retry_safe, inline=inline,
                     hedge_ms=hedge_ms)
            return fn

        return register

    def add(self, name: str, fn: Callable[..., Any], *, doc: Optional[str] = None,
            retry_safe: bool = False, inline: bool = False,
            hedge_ms: Optional[int] = None) -> Callable[..., Any]:
        """Registers `fn` as `name` (the non-decorator form); returns `fn`."""
        problem = invalid_name(name)
        if problem:
            raise ValueError(f"cannot register {name!r}: {problem}")
        if name in self._functions:
            raise ValueError(f"a function named {name!r} is already registered")
        if hedge_ms is not None and not retry_safe:
            raise ValueError(f"{name}: hedge_ms needs retry_safe=True (a hedged call may run twice)")
        entry = Function(name, fn, doc=doc or "", retry_safe=retry_safe, inline=inline,
                         hedge_ms=hedge_ms)
        if entry.is_async and inline:
            raise ValueError(f"{name}: an async function cannot be inline (it runs on the worker's event loop)")
        self._functions[name] = entry
        return fn

    def mount(self, prefix: str, other: "Registry") -> "Registry":
        """Adds every function of `other` under `prefix.` (a namespace)."""
        for entry in other:
            self.add(f"{prefix}.{entry.name}", entry.fn, doc=entry.doc, retry_safe=entry.retry_safe,
                     inline=entry.inline, hedge_ms=entry.hedge_ms)
            self._functions[f"{prefix}.{entry.name}"].signature = f"{prefix}.{entry.signature}"
        return self

    def get(self, name: str) -> Optional[Function]:
        return self._functions.get(name)

    def __iter__(self) -> Iterator[Function]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions


def invalid_name(name: str) -> Optional[str]:
    """Why a function name cannot be registered, or None."""
    if not isinstance(name, str) or not name:
        return "a name is a non-empty string"
    if len(name.encode()) > 255:
        return "names are at most 255 bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "names have no control characters"
    if name.startswith(_RESERVED):
        return f"names under '{_RESERVED}' are reserved for the broker"
    return None

