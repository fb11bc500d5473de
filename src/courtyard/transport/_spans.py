"""Spans in rows: the compact form in which gateway workers report their spans.

A worker at full sampling reports one span per request. As JSON objects (SpanRecord) each
costs a few hundred bytes and several microseconds to format; as a row it is a short array of
ids and integers, and what many spans share (name, service, attributes but the request id,
instance) is sent once per message as a *kind*::

    {"type": "span_rows", "worker": 3, "dropped": 0,
     "kinds": [["GET /apps/x/", "gateway", {"app": "x", "route": "/apps/x/"}, "x-1-ab"], ...],
     "rows": [[trace_id, span_id, parent_id or null, start_us, duration_us, status, kind,
               request_id], ...]}

``start_us`` is Unix time and ``duration_us`` a duration, both in whole microseconds. The
control plane turns the rows back into SpanRecord objects (:func:`expand_span_rows`) and
hands them on as an ordinary SpansMessage: nothing above the channel sees rows.
"""

from __future__ import annotations

from typing import Any

from courtyard.contracts import SpanRecord

SPAN_ROWS = "span_rows"  # the message type


def expand_span_rows(kinds: list[Any], rows: list[Any]) -> list[SpanRecord]:
    """The SpanRecord objects that ``rows`` (with their ``kinds``) stand for.

    Raises ValueError when a row or kind does not have the shape above.
    """
    spans: list[SpanRecord] = []
    try:
        for trace_id, span_id, parent_id, start, duration, status, kind, request_id in rows:
            name, service, attributes, instance = kinds[kind]
            fields: dict[str, str | int | float | bool] = {**attributes, "request_id": request_id}
            if instance is not None:
                fields["instance"] = instance
            spans.append(
                {
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "parent_id": parent_id,
                    "name": name,
                    "service": service,
                    "kind": "server",
                    "start": start / 1e6,
                    "duration": duration / 1e6,
                    "status": status,
                    "error": status >= 500,
                    "attributes": fields,
                }
            )
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"a malformed span row: {exc}") from None
    return spans
