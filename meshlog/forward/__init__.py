"""Receive fluentd / fluent-bit ``forward`` output: protocol (bytes → events), records (events →
lines frames), server (TCP, acks, limits). ``meshlog listen`` is the CLI edge."""
