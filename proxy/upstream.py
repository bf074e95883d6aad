"""Calling the backend a request was routed to (proxy/routing.py): an HTTP call or litellm.

Two paths, chosen per route by the provider litellm resolves from the model string:
- OpenAI-format providers (openai/*, deepseek/*, dashscope/*, hosted_vllm/*, groq/*, any route
  with an `api_base` and an OpenAI-format provider): litellm resolves provider, default base URL
  and key env, then the body is POSTed as is with httpx to `{api_base}/chat/completions`, and the
  backend's bytes come back unchanged, chunk by chunk when streaming. litellm's own call path
  rebuilds requests and responses (it drops unknown fields, reorders and re-creates chunks), which
  a transparent proxy cannot have, so it is not used for these.
- Everything else (anthropic/*, bedrock/*, vertex_ai/*, ...): `litellm.acompletion`, which
  translates to and from the OpenAI format; unknown fields go through `extra_body`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import httpx

from proxy.errors import from_exception, redact, upstream_error_from_response
from proxy.fasthttp import FastTransport
from proxy.jsonsafe import dumps
from proxy.responsecheck import require_json, require_sse
from proxy.routing import Backend

log = logging.getLogger(__name__)
# Backend response headers worth handing to the client (rate limits, request ids, timings).
_KEEP_HEADERS = ("x-request-id", "retry-after", "openai-processing-ms", "openai-version")
_LITELLM_PARAMS = frozenset(
    {"temperature", "top_p", "n", "stop", "max_tokens", "max_completion_tokens", "presence_penalty",
     "frequency_penalty", "logit_bias", "user", "response_format", "seed", "tools", "tool_choice",
     "parallel_tool_calls", "logprobs", "top_logprobs", "stream_options", "reasoning_effort",
     "metadata", "modalities", "audio", "prediction", "service_tier", "store"}
)  # fmt: skip


_USER_AGENT = f"python-httpx/{httpx.__version__}".encode()


@lru_cache(maxsize=256)
def _chat_url(api_base: str) -> httpx.URL:
    return httpx.URL(api_base.rstrip("/") + "/chat/completions")


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing (see Upstream.__init__)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class Upstream:
    """The HTTP client to backends (one per app; connection pooling across requests)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None):
        self.client = httpx.AsyncClient(
            transport=transport,
            # Idle connections are dropped after 4 s, before uvicorn-based backends (vLLM & co:
            # 5 s keep-alive) close them: a close racing a reused connection would be a 502.
            limits=httpx.Limits(
                max_connections=1000, max_keepalive_connections=100, keepalive_expiry=4.0
            ),
            follow_redirects=False,
        )
        # A proxy keeps no cookie jar: requests are built without the client's cookies, and
        # parsing every answer's Set-Cookie into a jar nobody reads was 15% of the proxy's CPU
        # per request (cProfile over benchmarks/proxy_cpu.py).
        self.client._cookies = _NoCookies()
        # Chat-shaped calls to plain-HTTP backends take the lean transport (proxy/fasthttp.py),
        # unless a transport was injected (tests) or the environment names an HTTP proxy (only
        # httpx's own transport honours one).
        self._fast: FastTransport | None = None
        if transport is None and not _env_proxies():
            self._fast = FastTransport(
                max_connections=1000, max_keepalive=100, keepalive_expiry=4.0
            )

    async def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        fast = self._fast
        if fast is None or request.url.scheme != "http":
            return await self.client.send(request, stream=stream)
        resp = await fast.handle_async_request(request)
        if not stream:
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        return resp

    def _request(
        self, b: Backend, body: dict, url: str | None = None, auth: dict | None = None
    ) -> httpx.Request:
        """POST `body` to `url` (default: the route's chat completions) with the backend's key
        as a bearer token, or as the `auth` headers a front door gives (e.g. Anthropic's).
        Built directly: the client's build_request (URL parsing, header and cookie merging) was
        a third of the proxy's CPU per request."""
        stream = body.get("stream") is True
        headers = [
            (b"Accept", b"text/event-stream" if stream else b"*/*"),
            (b"Connection", b"keep-alive"),
            (b"User-Agent", _USER_AGENT),
            (b"content-type", b"application/json"),
            (b"accept-encoding", b"identity"),
        ]
        if auth is not None:
            headers += [(k.encode(), v.encode()) for k, v in auth.items()]
        elif b.api_key:
            headers.append((b"authorization", f"Bearer {b.api_key}".encode()))
        content = dumps(body)
        timeout = {"connect": b.connect_timeout_s, "read": b.timeout_s, "write": b.timeout_s,
                   "pool": b.timeout_s}  # fmt: skip
        return httpx.Request(
            "POST",
            httpx.URL(url) if url else _chat_url(b.api_base),  # type: ignore[arg-type]
            headers=headers,
            content=content,
            extensions={"timeout": timeout},
        )

    async def complete(
        self, b: Backend, body: dict, url: str | None = None, auth: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Non-streaming call: (status, headers to keep, body bytes) of a 2xx answer. Routes
        that are not OpenAI-format go through litellm unless a front door gives the `url`."""
        if not b.passthrough and url is None:
            return await _litellm_complete(b, body)
        try:
            resp = await self._send(self._request(b, body, url, auth), stream=False)
        except Exception as exc:
            raise from_exception(exc) from exc
        kept = _kept(resp.headers, _secrets(b))
        if resp.status_code >= 400:
            raise upstream_error_from_response(resp.status_code, resp.content, _secrets(b), kept)
        require_json(resp.content, resp.headers.get("content-type"))
        return resp.status_code, kept, resp.content

    async def stream(
        self, b: Backend, body: dict, url: str | None = None, auth: dict | None = None
    ) -> tuple[dict[str, str], AsyncIterator[bytes]]:
        """Streaming call: response headers once the backend answered 2xx, then its bytes.

        Errors before the first byte raise here (the client gets a plain JSON error with the
        status); errors after it raise from the iterator (the caller turns them into an SSE error
        event). Closing the iterator closes the backend connection.
        """
        if not b.passthrough and url is None:
            return {}, await _litellm_stream(b, body)
        try:
            resp = await self._send(self._request(b, body, url, auth), stream=True)
        except Exception as exc:
            raise from_exception(exc) from exc
        kept = _kept(resp.headers, _secrets(b))
        if resp.status_code >= 400:
            try:
                content = await resp.aread()
            except Exception as exc:
                raise from_exception(exc) from exc
            finally:
                await resp.aclose()
            raise upstream_error_from_response(resp.status_code, content, _secrets(b), kept)
        chunks = _relay(resp, _secrets(b))
        try:  # the first bytes must look like SSE before the client is told 200
            first = await anext(chunks)  # a peek: _relay yields its first chunk twice
            require_sse(first, resp.headers.get("content-type"))
        except BaseException:
            await chunks.aclose()
            raise
        return kept, chunks

    async def list_models(self, b: Backend, timeout_s: float = 10.0) -> list[dict]:
        """The backend's own `GET /models` entries (OpenAI format); raises on any failure."""
        headers = {"accept": "application/json"}
        if b.api_key:
            headers["authorization"] = f"Bearer {b.api_key}"
        url = b.api_base.rstrip("/") + "/models"  # type: ignore[union-attr]
        resp = await self.client.get(url, headers=headers, timeout=timeout_s)
        resp.raise_for_status()
        data = resp.json().get("data")
        if not isinstance(data, list):
            raise ValueError("the backend's model list has no `data` array")
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def close(self) -> None:
        await self.client.aclose()
        if self._fast is not None:
            await self._fast.aclose()


async def _relay(resp: httpx.Response, secrets: tuple[str, ...]) -> AsyncIterator[bytes]:
    """The backend's body as it comes, empty chunks dropped, errors as ProxyErrors; closing it
    closes the response. The first chunk (b"" when the body is empty) is yielded twice: once
    for `Upstream.stream` to look at before the client is told 200, then as the stream's first
    chunk - no second generator stacked on top, as this runs for every chunk of every stream.
    Without a content-encoding the response's byte stream is read directly (httpx's decoding
    layers would pass the bytes through unchanged)."""
    raw = resp.aiter_bytes() if "content-encoding" in resp.headers else resp.stream
    chunks = raw.__aiter__()
    try:
        first = b""
        async for chunk in chunks:
            if chunk:
                first = chunk
                break
        yield first  # the peek
        yield first
        async for chunk in chunks:
            if chunk:
                yield chunk
    except Exception as exc:
        raise from_exception(exc, secrets) from exc
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
        await resp.aclose()


def _env_proxies() -> bool:
    try:
        from httpx._utils import get_environment_proxies
    except ImportError:  # pragma: no cover - a newer httpx: assume one may be set
        return True
    return any(v is not None for v in get_environment_proxies().values())


def _kept(headers: httpx.Headers, secrets: tuple[str, ...]) -> dict[str, str]:
    """The backend headers the client gets, scrubbed of the route's key like bodies are."""
    out = {k: v for k, v in headers.items() if k.lower() in _KEEP_HEADERS}
    out.update({k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")})
    if "content-type" in headers:
        out["content-type"] = headers["content-type"]
    return {k: redact(v, secrets) for k, v in out.items()} if secrets else out


def _secrets(b: Backend) -> tuple[str, ...]:
    return (b.api_key,) if b.api_key else ()


@lru_cache(maxsize=1)
def _litellm():
    """litellm, imported once, quiet, with the names a client body must never set on it."""
    from proxy.tokens import configure_offline

    configure_offline()
    import litellm
    from litellm.types.utils import all_litellm_params

    litellm.suppress_debug_info = True
    control = set(all_litellm_params) | {
        "timeout", "deployment_id", "extra_headers", "extra_body", "base_url", "api_version",
        "api_key", "api_base", "model_list", "shared_session", "enable_json_schema_validation",
        "custom_llm_provider", "mock_response", "mock_tool_calls", "client", "acompletion",
    }  # fmt: skip
    return litellm, frozenset(control - _LITELLM_PARAMS)


def _litellm_kwargs(b: Backend, body: dict) -> dict[str, Any]:
    """Body fields as litellm kwargs. Fields litellm would read as its own settings (api_key,
    api_base, mock_response, callbacks...) are dropped: a client must not steer the proxy's
    litellm. Unknown provider fields (e.g. Anthropic's top_k) go through as kwargs, which litellm
    forwards to the provider."""
    _, control = _litellm()
    kwargs: dict[str, Any] = {"model": b.litellm_model, "messages": body["messages"]}
    dropped = []
    for k, v in body.items():
        if k in ("model", "messages", "stream"):
            continue
        if k in control or k.startswith(("litellm", "aws_", "vertex_")):
            dropped.append(k)
            continue
        kwargs[k] = v
    if dropped:
        log.warning("dropped fields litellm would treat as its own settings: %s", sorted(dropped))
    kwargs.update(api_base=b.api_base, api_key=b.api_key, timeout=b.timeout_s, num_retries=0)
    return kwargs


async def _litellm_complete(b: Backend, body: dict) -> tuple[int, dict[str, str], bytes]:
    litellm, _ = _litellm()
    try:
        resp = await litellm.acompletion(**_litellm_kwargs(b, body))
    except Exception as exc:
        raise from_exception(exc, _secrets(b)) from exc
    data = resp.model_dump(exclude_none=True) if hasattr(resp, "model_dump") else dict(resp)
    data.pop("_hidden_params", None)
    return 200, {"content-type": "application/json"}, json.dumps(data).encode()


async def _litellm_stream(b: Backend, body: dict) -> AsyncIterator[bytes]:
    litellm, _ = _litellm()
    try:
        resp = await litellm.acompletion(stream=True, **_litellm_kwargs(b, body))
    except Exception as exc:
        raise from_exception(exc, _secrets(b)) from exc

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in resp:
                data = chunk.model_dump(exclude_none=True)
                yield b"data: " + json.dumps(data).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        except Exception as exc:
            raise from_exception(exc, _secrets(b)) from exc
        finally:
            close = getattr(resp, "aclose", None)
            if close is not None:
                await close()

    return chunks()


async def close_litellm_clients() -> None:
    """litellm keeps its own HTTP clients, bound to the event loop that made them: close them
    with the app (and forget them), so none outlives its loop with a socket open."""
    if _litellm.cache_info().currsize == 0:
        return  # litellm was never set up in this process
    litellm, _ = _litellm()
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    try:
        await close_litellm_async_clients()
    except Exception as exc:  # noqa: BLE001 - shutting down; nothing left to fail
        log.warning("closing litellm's clients failed: %s", exc)
    litellm.in_memory_llm_clients_cache.flush_cache()
