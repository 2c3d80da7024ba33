#!/bin/sh
# Entrypoint of the CDP image. The first argument picks the process:
#
#   web     (the default) migrate, collect static files, then gunicorn on 0.0.0.0:$PORT (8000)
#   worker  celery -A cdp worker
#   beat    celery -A cdp beat (its schedule file is $CDP_VAR_DIR/celerybeat-schedule),
#           answering `celery inspect ping` as celerybeat@<hostname>
#   ...     anything else runs as given, e.g. `python manage.py createsuperuser`
#
# Extra arguments after web/worker/beat go to gunicorn/celery. Tunables (environment):
# PORT (8000), WEB_CONCURRENCY (gunicorn workers, 3), WEB_THREADS (threads of each gthread
# worker, 4: docs/architecture.md says why), CELERY_CONCURRENCY (the worker's
# processes, default one per CPU), LOG_LEVEL (INFO).
set -eu

# manage.py sits one level up from this script (/app/manage.py in the image).
cd "$(dirname "$0")/.."

log_level="${LOG_LEVEL:-INFO}"

case "${1:-web}" in
web)
    if [ "$#" -gt 0 ]; then shift; fi
    python manage.py migrate --noinput
    # STATIC_ROOT is $CDP_VAR_DIR/static, on the volume: collected at every start so an
    # upgraded image never serves the previous release's files.
    python manage.py collectstatic --noinput
    # gunicorn.conf.py: an access log that never shows a secret (write keys, webhook secrets).
    exec gunicorn cdp.wsgi:application \
        --config gunicorn.conf.py \
        --bind "0.0.0.0:${PORT:-8000}" \
        --workers "${WEB_CONCURRENCY:-3}" \
        --worker-class gthread \
        --threads "${WEB_THREADS:-4}" \
        --worker-tmp-dir /dev/shm \
        --access-logfile - \
        --error-logfile - \
        --log-level "$(echo "$log_level" | tr '[:upper:]' '[:lower:]')" \
        "$@"
    ;;
worker)
    shift
    if [ -n "${CELERY_CONCURRENCY:-}" ]; then
        set -- --concurrency "$CELERY_CONCURRENCY" "$@"
    fi
    exec celery -A cdp worker --loglevel "$log_level" "$@"
    ;;
beat)
    shift
    # Remote control makes beat answer `celery inspect ping` as celerybeat@<hostname> while
    # its scheduler ticks: the compose healthcheck.
    exec celery -A cdp beat --enable-remote-control --loglevel "$log_level" "$@"
    ;;
*)
    exec "$@"
    ;;
esac
