"""meshlog: triage Istio sidecar (Envoy) access logs and mesh metrics — what is failing, where, and why."""

__version__ = "0.2.0"
