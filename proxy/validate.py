"""Parse and check a chat request just enough to work on it safely.

Only what the proxy itself reads is checked (model, messages and their text, stream); every other
field is the backend's business and passes through untouched, known or not. Each problem gets an
OpenAI-format 400 naming the offending field.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidJSON, InvalidRequest
from proxy.jsonsafe import loads


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a dict; too deep, NaN/Infinity and lone surrogates are 400s (proxy.jsonsafe)."""
    if not raw.strip():
        raise InvalidJSON("The request body is empty; expected a JSON object.")
    body = loads(raw)
    if not isinstance(body, dict):
        raise InvalidJSON(f"The request body must be a JSON object, not {type(body).__name__}.")
    return body


def check_chat(body: dict[str, Any]) -> None:
    check_model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "messages must be a non-empty array", param="messages", code="invalid_type"
        )
    for i, msg in enumerate(messages):
        _check_message(i, msg)
    check_stream(body)


def check_model(body: dict[str, Any]) -> None:
    """`model`: the one field every front door routes on."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest(
            "you must provide a model parameter", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            f"model must be a non-empty string, got {_kind(model)}",
            param="model",
            code="invalid_type",
        )


def check_stream(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest(
            f"stream must be a boolean, got {_kind(stream)}", param="stream", code="invalid_type"
        )


def _check_message(i: int, msg: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise InvalidRequest(
            f"{where} must be an object, got {_kind(msg)}", param=where, code="invalid_type"
        )
    if not isinstance(msg.get("role"), str):
        raise InvalidRequest(
            f"{where}.role must be a string", param=f"{where}.role", code="invalid_type"
        )
    content = msg.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{where}.content must be a string or an array of content parts, got {_kind(content)}",
            param=f"{where}.content",
            code="invalid_type",
        )
    for j, part in enumerate(content):
        pwhere = f"{where}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidRequest(
                f"{pwhere} must be an object with a string `type`",
                param=pwhere,
                code="invalid_type",
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"{pwhere}.text must be a string", param=f"{pwhere}.text", code="invalid_type"
            )


def _kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number" if isinstance(v, int | float) else type(v).__name__
    )
