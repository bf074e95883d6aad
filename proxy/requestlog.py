"""The JSONL request log: one line per chat request, read by `cprs ab-report`.

Record (the contract with proxy/abreport.py):
    {"ts", "request_id", "tenant", "policy", "model", "arm", "compressed", "cache",
     "original_tokens", "sent_tokens", "latency_ms", "upstream_ms", "compress_ms",
     "status", "error_type", "stream", "followup", "followup_tokens", "skipped", "endpoint"}
(`skipped`: the reason each uncompressed document went as sent, as in x-cprs-skipped, or null.)
No message text, no keys: only counts, names and timings. Each line is one `write` to the file
opened in append mode for that line, so concurrent replicas appending to one file on a local
filesystem do not interleave lines, and a rotated-away log (logrotate) is recreated at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, fields

log = logging.getLogger(__name__)


@dataclass
class RequestRecord:
    """One chat request's line: the one declaration of its fields. proxy/chat.py's request
    context extends it and fills the fields in as the request runs."""

    ts: float = 0.0
    request_id: str = ""
    tenant: str = "-"
    policy: str = "-"
    model: str = "unknown"
    arm: str = "compress"
    compressed: bool = False
    cache: str = "off"
    original_tokens: int = 0
    sent_tokens: int = 0
    latency_ms: float | None = None
    upstream_ms: float | None = None
    compress_ms: float | None = None
    status: int = 200
    error_type: str | None = None
    stream: bool = False
    followup: str | None = None  # appended | requeried | stable (proxy/followups.py)
    followup_tokens: int = 0
    skipped: list[str] | None = None  # x-cprs-skipped's reasons
    endpoint: str = "chat"  # the front door: chat | responses | messages

    def to_json(self) -> dict:
        """The logged fields only (a subclass's working fields stay out)."""
        return {f.name: getattr(self, f.name) for f in fields(RequestRecord)}


class RequestLog:
    def __init__(self, path: str | None):
        self.path = path
        self._lock = threading.Lock()
        if path:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            except OSError as exc:  # each write will warn; serving goes on
                log.error("request log directory for %s cannot be created: %s", path, exc)

    def write(self, record: RequestRecord) -> None:
        if not self.path:
            return
        line = json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:  # a full disk must not fail requests
            log.warning("request log write failed: %s", exc)

    def close(self) -> None:
        """Nothing stays open between writes; kept for the state's lifecycle."""
