"""Device simulator: `iot simulate` serves fake devices on loopback for the demo, the tests and benchmarks.

    iot simulate --devices N --base-port P [--tcp-devices M] --control-port C [--push-url URL] [--host H]

Devices are numbered by index. HTTP devices 0..N-1 listen on P+index and answer any request with
`200 ok`; TCP devices N..N+M-1 listen on P+index, accept, and send `ok\\r\\n`. Everything runs in one
asyncio process (one listening socket per device; thousands are fine, raise `ulimit -n` beyond ~9,000).
Monitors bind their probes to 127.0.0.x source addresses, so a device can refuse one "region".

Failure modes per device:
- `mode: "fail"`  HTTP: `500 fail`.  TCP: the listener is closed (connection refused).
- `mode: "hang"`  HTTP: the request is read and never answered.  TCP: SYNs are dropped (connect times out).
- `delay_ms: X`   HTTP: the answer is sent X ms late.  TCP: the banner is sent X ms late.
- `refuse_sources: ["127.0.0.3"]`  HTTP: `503 refused` and close for that peer.  TCP: SYNs from it are
  dropped by a BPF filter on the listening socket (connect times out); other sources are unaffected.

Control API (JSON over HTTP on 127.0.0.1:C; errors are 4xx `{"detail": "<field>: <reason>"}`):
- `GET  /health` -> `{"status": "ok", "http_devices": N, "tcp_devices": M, "push_devices": K}`
- `GET  /devices` -> `[{"index", "kind", "port", "target", "mode", "delay_ms", "refuse_sources", "hits"}]`
- `GET  /devices/{i}` -> one of those
- `POST /devices/{i}` `{"mode"?: "ok"|"fail"|"hang", "delay_ms"?: X, "refuse_sources"?: [addr...]}`
  changes only the given fields; answers the device
- `POST /devices` same fields plus `"devices": "all" | [i, ...] | {"from": a, "to": b}` (default all),
  e.g. `{"refuse_sources": ["127.0.0.3"]}` cuts one region off every device
- `POST /devices/{i}/reset`, `POST /reset` (all; `{"hits": true}` also zeroes the counters): back to ok
- `GET  /devices/{i}/hits` -> `{"index", "hits", "by_source": {"127.0.0.2": n}}` (probes received:
  HTTP requests, TCP connections accepted; refused HTTP requests count, dropped SYNs cannot)
- `GET  /hits[?per_source=1]` -> `{"hits": [n0, n1, ...], "total", "by_source", "per_device_by_source"?}`
- `POST /hits/reset`
- Push devices (need `--push-url http://tracker`): `PUT /push/{key}` `{"token": "<device ingest token>",
  "interval_s": 5, "metric"?: "temp" | null (bare heartbeats), "silent"?: false}` starts sending every
  interval; `POST /push/{key}` `{"silent": true|false}` stops/resumes; `DELETE /push/{key}`;
  `GET /push` -> `[{"key", "sent", "failures", "last_status", "last_error", ...}]`
"""
