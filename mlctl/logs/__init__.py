"""Log processing: parse (template mining), classify, route to sinks, stream from Kafka, evaluate."""
