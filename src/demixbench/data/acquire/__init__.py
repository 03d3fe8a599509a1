"""Put a dataset in place, verified: generate, download or extract it (``ingest.ingest``, the one
call the workflow makes). The package does not re-export ``ingest``: the function would shadow
its module of the same name."""
