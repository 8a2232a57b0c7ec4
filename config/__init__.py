"""The phase sets bundled with phasekit (``load_spec("ingestion")``) and the format's JSON Schema."""
