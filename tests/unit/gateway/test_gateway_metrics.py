"""Worker counters and their Prometheus text (exposition format 0.0.4)."""

from __future__ import annotations

import io
import json

from prometheus_client.parser import text_string_to_metric_families

from courtyard.contracts import LATENCY_BUCKETS, WorkerMetrics
from courtyard.gateway import render_metrics
from courtyard.gateway._accesslog import AccessLog
from courtyard.gateway._metrics import MAX_SPANS, Metrics


def test_record_counts_classes_and_buckets() -> None:
    metrics = Metrics()
    metrics.record("x", "/x/", 200, 0.001)  # on a bound: that bucket (le)
    metrics.record("x", "/x/", 201, 0.0011)
    metrics.record("x", "/x/", 503, 99.0)  # beyond the last bound: +Inf
    metrics.record("-", "-", 404, 0.0)
    metrics.record("x", "/x/", 101, None)  # upgrades stay out of the histogram
    metrics.record_mesh("a", "x", 200, 0.002)
    metrics.upstream_error("x", "connect")
    snap = metrics.snapshot()
    assert snap["requests"] == {"x|/x/|2xx": 2, "x|/x/|5xx": 1, "-|-|4xx": 1, "x|/x/|1xx": 1}
    buckets = snap["latency"]["x|/x/"]["buckets"]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets[0] == 1 and buckets[1] == 1 and buckets[-1] == 1
    assert snap["latency"]["x|/x/"]["count"] == 3
    assert snap["upstream_errors"] == {"x|connect": 1}
    assert snap.get("mesh") == {"a>x|2xx": 1}  # mesh calls are not gateway requests
    assert snap.get("mesh_latency", {})["a>x"]["count"] == 1
    # the snapshot is a copy
    snap["requests"]["x|/x/|2xx"] = 0
    assert metrics.snapshot()["requests"]["x|/x/|2xx"] == 2


def test_spans_are_kept_until_taken_and_bounded() -> None:
    metrics = Metrics()
    trace = (b"a" * 32, b"b" * 16, b"", False)
    for _ in range(MAX_SPANS + 3):
        metrics.span(trace, 10.0, 0.5, 503, b"GET", "x", "/x/", "", b"r-1", "x-1")
    spans, dropped = metrics.take_spans()
    assert len(spans) == MAX_SPANS and dropped == 3
    assert spans[0] == {
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "parent_id": None,
        "name": "GET /x/",
        "service": "gateway",
        "kind": "server",
        "start": 10.0,
        "duration": 0.5,
        "status": 503,
        "error": True,
        "attributes": {"app": "x", "route": "/x/", "request_id": "r-1", "instance": "x-1"},
    }
    assert metrics.take_spans() == ([], 0)


def test_a_mesh_span_is_named_after_its_target() -> None:
    metrics = Metrics()
    trace = (b"a" * 32, b"b" * 16, b"c" * 16, True)
    metrics.span(trace, 1.25, 0.000125, 200, b"POST", "x", "-", "y", b"r-2", None)
    ((span,), _) = metrics.take_spans()
    assert (span["service"], span["name"], span["parent_id"]) == ("mesh", "POST x", "c" * 16)
    assert (span["start"], span["duration"]) == (1.25, 0.000125)  # microseconds kept
    assert not span["error"] and span.get("attributes") == {
        "caller": "y",
        "target": "x",
        "request_id": "r-2",
    }


def test_span_rows_share_their_kinds() -> None:
    metrics = Metrics()
    trace = (b"a" * 32, b"b" * 16, b"", True)
    for instance in ("i-1", "i-2", "i-1"):
        metrics.span(trace, 1.0, 0.1, 200, b"GET", 'we"ird', "/r/", "", b"r", instance)
    kinds, rows, count, dropped = metrics.take_span_rows()
    assert (count, dropped) == (3, 0)
    assert json.loads(kinds) == [
        ["GET /r/", "gateway", {"app": 'we"ird', "route": "/r/"}, "i-1"],
        ["GET /r/", "gateway", {"app": 'we"ird', "route": "/r/"}, "i-2"],
    ]
    assert [row[6] for row in json.loads(rows)] == [0, 1, 0]
    assert metrics.take_span_rows()[1:] == (b"[]", 0, 0)


def _worker(requests: dict[str, int], app_buckets: list[int], in_flight: int) -> WorkerMetrics:
    return {
        "requests": requests,
        "latency": {
            'we"ird\\app|/r/': {"buckets": app_buckets, "sum": 0.5, "count": sum(app_buckets)}
        },
        "upstream_errors": {"x|timeout": 2},
        "in_flight": in_flight,
    }


def test_render_sums_workers_in_exposition_format() -> None:
    one = [1] + [0] * 12 + [2]
    two = [0, 3] + [0] * 12
    text = render_metrics(
        {
            1: _worker({"x|/r/|2xx": 5, "x|/r/|5xx": 1}, one, 2),
            2: _worker({"x|/r/|2xx": 7}, two, 1),
        }
    )
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {
        (s.labels["app"], s.labels["route"], s.labels["code_class"]): s.value
        for s in families["courtyard_gateway_requests"].samples
    }
    assert requests == {("x", "/r/", "2xx"): 12, ("x", "/r/", "5xx"): 1}
    histogram = families["courtyard_gateway_request_duration_seconds"]
    assert histogram.type == "histogram"
    buckets = [s for s in histogram.samples if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets][:3] == ["0.001", "0.0025", "0.005"]
    assert buckets[-1].labels["le"] == "+Inf"
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[0] == 1 and counts[1] == 4 and counts[-1] == 6
    assert buckets[0].labels["app"] == 'we"ird\\app' and buckets[0].labels["route"] == "/r/"
    sums = {s.name: s.value for s in histogram.samples if not s.name.endswith("_bucket")}
    assert sums["courtyard_gateway_request_duration_seconds_sum"] == 1.0
    assert sums["courtyard_gateway_request_duration_seconds_count"] == 6
    assert families["courtyard_gateway_in_flight_requests"].samples[0].value == 3
    [error] = families["courtyard_gateway_upstream_errors"].samples
    assert (error.labels, error.value) == ({"app": "x", "kind": "timeout"}, 4)
    assert "# TYPE courtyard_gateway_requests_total counter" in text
    assert "# TYPE courtyard_mesh_requests_total counter" in text
    assert 'le="1.0"' in text and 'le="10.0"' in text
    assert text.endswith("\n")


def test_render_mesh_calls_by_caller_and_target() -> None:
    worker: WorkerMetrics = {
        "requests": {},
        "latency": {},
        "upstream_errors": {},
        "in_flight": 0,
        "mesh": {"expenses>notes|2xx": 4, "expenses>notes|5xx": 1},
        "mesh_latency": {"expenses>notes": {"buckets": [5] + [0] * 13, "sum": 0.004, "count": 5}},
    }
    families = {f.name: f for f in text_string_to_metric_families(render_metrics({1: worker}))}
    calls = {
        (s.labels["caller"], s.labels["target"], s.labels["code_class"]): s.value
        for s in families["courtyard_mesh_requests"].samples
    }
    assert calls == {("expenses", "notes", "2xx"): 4, ("expenses", "notes", "5xx"): 1}
    assert families["courtyard_mesh_request_duration_seconds"].type == "histogram"


def test_render_with_no_workers() -> None:
    text = render_metrics({})
    assert "courtyard_gateway_in_flight_requests 0" in text
    list(text_string_to_metric_families(text))


def test_access_log_buffers_until_flushed() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream)
    log.record(
        1700000000.25,
        b"rid",
        b"GET",
        b"/a",
        200,
        12,
        0.0015,
        b"x",
        b'"i-1"',
        b"1.2.3.4",
        b"200",
        b"4bf92f3577b34da6a3ce929d0e0e4736",
    )
    log.record(
        1700000001.5,
        b"rid2",
        b"POST",
        b'/we"ird\\\x01',
        502,
        0,
        0.1,
        b"-",
        b"null",
        b"::1",
        b"reset",
    )
    assert stream.getvalue() == b""
    log.flush()
    lines = stream.getvalue().decode().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first == {
        "time": "2023-11-14T22:13:20.250Z",
        "request_id": "rid",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "method": "GET",
        "path": "/a",
        "status": 200,
        "bytes": 12,
        "duration_ms": 1.5,
        "app": "x",
        "instance": "i-1",
        "client": "1.2.3.4",
        "upstream": "200",
    }
    assert second["path"] == '/we"ird\\\x01' and second["instance"] is None
    assert second["trace_id"] is None  # answered before a trace was chosen
