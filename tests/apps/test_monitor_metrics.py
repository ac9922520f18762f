"""The monitor's /metrics figures: latency histogram counted per group of results, drops by reason."""

from prometheus_client import generate_latest

from iot.monitor.metrics import MonitorMetrics


def test_latency_histogram_is_cumulative_per_kind_and_counts_only_successes():
    metrics = MonitorMetrics("frankfurt")
    metrics.record_results([("icmp", True, 0.5), ("icmp", True, 30.0), ("http", False, None)])
    metrics.record_results([("icmp", True, 20_000.0), ("http", True, 3.0)])
    text = generate_latest(metrics.registry).decode()
    assert 'iot_monitor_check_latency_seconds_bucket{kind="icmp",le="0.001"} 1.0' in text
    assert 'iot_monitor_check_latency_seconds_bucket{kind="icmp",le="0.05"} 2.0' in text
    assert 'iot_monitor_check_latency_seconds_bucket{kind="icmp",le="10.0"} 2.0' in text
    assert 'iot_monitor_check_latency_seconds_bucket{kind="icmp",le="+Inf"} 3.0' in text
    assert 'iot_monitor_check_latency_seconds_count{kind="http"} 1.0' in text
    assert 'iot_monitor_checks_total{kind="http",outcome="down"} 1.0' in text
    metrics.dropped.labels("late").inc(2)
    assert 'iot_monitor_checks_dropped_total{reason="late"} 2.0' in generate_latest(metrics.registry).decode()
