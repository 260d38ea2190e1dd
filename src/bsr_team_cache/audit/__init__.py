"""The audit log: one JSON line per cache operation (who, on which machine, what, on which
module commits and digests, with what result), appended to ``audit.jsonl`` beside the local
store. The record format is in docs/security.md."""
