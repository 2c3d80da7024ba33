"""gunicorn's settings for the CDP: read by `dev.py start` and the Docker entrypoint (both
pass it), and by any `gunicorn cdp.wsgi` started from this directory (gunicorn reads
./gunicorn.conf.py by default). Its access log never shows a secret (cdp/logredact.py)."""

logger_class = "cdp.gunicorn_logging.RedactingLogger"
# gunicorn's default format without `%(u)s` (the Basic-auth user: a write key, an access
# token); the request line and the referer are redacted by the logger class.
access_log_format = '%(h)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
