"""Parsing a client's JSON body without letting it crash or poison the proxy.

Three things `json.loads` accepts that the proxy must not:

- **Deep nesting.** A body nested 100,000 levels deep makes the parser (and everything that walks
  the result afterwards) raise RecursionError. `check_depth` measures the nesting on the raw bytes
  first, outside strings, in C-speed passes (a regex strips strings, `translate` keeps brackets),
  and refuses anything deeper than MAX_DEPTH before the parser starts.
- **NaN / Infinity** (and numbers like `1e999` that overflow to infinity): not JSON, and they
  would go on to the backend as invalid JSON. Refused while parsing.
- **Lone surrogates** (`"\\ud800"`, or CESU-8 bytes): Python keeps them in `str`, and they fail
  later when the body is encoded for the backend or an error echoes them. Found after parsing
  (only when the raw bytes can hold one at all) and refused with the JSON path of the field.

Every refusal is an InvalidJSON / InvalidRequest (400) in OpenAI's error format.

Speed: orjson (when installed; a dependency of the proxy) parses and serializes bodies, 5-100x
faster than the json module on big documents. It refuses NaN, Infinity, lone surrogates and
invalid UTF-8 by itself; whatever it refuses is parsed again with the json module, which
accepts or refuses it exactly as before and names the field in its message. Integers of 19+
digits (orjson would turn those beyond 64 bits into floats) always take the json module.
`dumps` writes what `json.dumps(ensure_ascii=False, separators=(",", ":"))` writes, up to float
spelling (`1e16` for `1e+16`: the same number).
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from proxy.errors import InvalidJSON, InvalidRequest

try:
    import orjson
except ImportError:  # pragma: no cover - a checkout without it still works, slower
    orjson = None

MAX_DEPTH = 128  # arrays + objects; OpenAI's own structured-output schemas stop far below this

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# A `\uD800`-`\uDFFF` escape, or a surrogate encoded in (CESU-8) bytes, which json.loads decodes.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")
_LONG_INT = re.compile(rb"\d{19}")


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in `raw` (strings ignored; raw need not parse)."""
    openers = raw.count(b"[") + raw.count(b"{")
    if openers <= MAX_DEPTH:
        return openers  # an upper bound, and cheap: most bodies stop here
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def check_depth(raw: bytes) -> None:
    if depth(raw) > MAX_DEPTH:
        raise InvalidJSON(
            f"The JSON body is nested more than {MAX_DEPTH} levels deep; we could not parse it."
        )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def loads(raw: bytes) -> Any:
    """json.loads without NaN/Infinity, depth-checked first, lone surrogates refused after."""
    check_depth(raw)
    if orjson is not None and not _LONG_INT.search(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the json module below says why (or accepts it: UTF-16, say)
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJSON(
            f"We could not parse the JSON body of your request ({printable(str(exc))}). "
            "The body must be a JSON object."
        ) from exc
    if _MAYBE_SURROGATE.search(raw):
        where = lone_surrogate_path(value)
        if where is not None:
            raise InvalidRequest(
                f"{where or 'the body'} contains a lone UTF-16 surrogate (\\ud800-\\udfff "
                "without its pair), which is not valid Unicode text.",
                param=where or None,
                code="invalid_unicode",
            )
    return value


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The JSON path (`messages[0].content`) of the first string or key holding a lone surrogate."""
    if isinstance(value, str):
        return path if _has_surrogate(value) else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if _has_surrogate(key):
                return printable(sub)
            found = lone_surrogate_path(item, sub)
            if found is not None:
                return found
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable(text: str) -> str:
    """`text` with any lone surrogate written as a `\\udxxx` escape, safe to encode as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of a parsed body (for the backend)."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass  # an integer beyond 64 bits: the json module writes it exactly
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def is_json(content: bytes) -> bool:
    """Whether `content` parses as JSON (a backend's answer; no limits applied)."""
    if orjson is not None:
        try:
            orjson.loads(content)
            return True
        except orjson.JSONDecodeError:
            pass
    try:
        json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True
