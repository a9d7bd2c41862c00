"""statsd metrics: every metric declared once (:mod:`.declarations`), the socket that sends
them (:mod:`.emitter`), and what each measurement becomes on the wire (:mod:`.publish`)."""
