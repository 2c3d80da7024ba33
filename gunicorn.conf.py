"""gunicorn's settings for the CDP: read by `dev.py start` and the Docker entrypoint (both
pass it), and by any `gunicorn cdp.wsgi` started from this directory (gunicorn reads
./gunicorn.conf.py by default). Its access log never shows a secret (cdp/logredact.py)."""

logger_class = "cdp.gunicorn_logging.RedactingLogger"
# gunicorn's default format without `%(u)s` (the Basic-auth user: a write key, an access
# token); the request line and the referer are redacted by the logger class.
access_log_format = '%(h)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'

# gthread, 4 threads a worker: connections are kept alive (neither side pays a TCP handshake
# per request: the load generator's CPU per lookup halves) and one worker per core is enough.
# Measured with bench/lookup.py --search on the 2-core machine (2026-12-04, a busy hour: load
# 4 to 8), the highest rate with p99 under 25 ms and gunicorn's CPU per lookup: gthread 2x4
# 457/s, 1.52 ms; gthread 4x2 347/s, 1.75 ms; sync 3 300/s, 1.54 ms; sync 4 169 to 300/s,
# 1.59 ms; sync 6 309/s, 1.64 ms. The worker count comes from the command line (dev.py
# --workers 2, the image's WEB_CONCURRENCY).
worker_class = "gthread"
threads = 4
