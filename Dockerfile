# The CDP image: one image for the web server, the Celery worker and Celery beat.
# docker-compose.yml runs it; docker/entrypoint.sh says which process a container is.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=cdp.settings.production \
    CDP_VAR_DIR=/data

WORKDIR /app

# Only the "# --- run ---" section of requirements.txt: the test and lint pins stay out of
# the image. The grep fails the build if that section ever stops holding the server.
COPY requirements.txt /tmp/requirements.txt
RUN awk '/^# --- run ---/ { run = 1; next } /^# ---/ { run = 0 } run && NF && !/^#/' \
        /tmp/requirements.txt > /tmp/requirements-run.txt \
    && for pkg in Django gunicorn celery psycopg whitenoise; do \
           grep -qi "^$pkg" /tmp/requirements-run.txt \
           || { echo "requirements.txt: $pkg is not in the '# --- run ---' section" >&2; exit 1; }; \
       done \
    && pip install -r /tmp/requirements-run.txt \
    && rm /tmp/requirements.txt /tmp/requirements-run.txt

# The app runs as an unprivileged user. Its code stays root-owned (read-only to it); what
# it keeps goes to $CDP_VAR_DIR (/data), a volume in docker-compose.yml: a new named volume
# takes this directory's owner, so the user can write there. Its home holds only gunicorn's
# control socket ($HOME/.gunicorn/gunicorn.ctl).
RUN useradd --system --user-group --uid 10001 --create-home --home-dir /home/cdp \
        --shell /usr/sbin/nologin cdp \
    && mkdir -p /data \
    && chown cdp:cdp /data

COPY . /app
RUN chmod 0755 /app/docker/entrypoint.sh \
    && python -m compileall -q /app

USER cdp
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
