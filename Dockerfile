# syntax=docker/dockerfile:1
# One image for every role of the service: `accounts api` (default), `accounts worker`, `accounts db upgrade`.
FROM python:3.11-slim

# Inside a container the API must listen on every interface to be reachable through a published port.
# The image is for production: it refuses placeholder secrets and missing keys (one line naming the setting);
# ACCOUNTS_ENVIRONMENT=development at `docker run` turns that off.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    ACCOUNTS_ENVIRONMENT=production \
    ACCOUNTS_API_HOST=0.0.0.0 \
    ACCOUNTS_API_PORT=8000

RUN groupadd --system --gid 10001 accounts \
    && useradd --system --uid 10001 --gid accounts --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin accounts

WORKDIR /app

# Dependencies first, in their own layer, so that a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Editable install: templates/ and migrations/ are read from the source tree at run time.
# The code stays root-owned, read-only for the service; only var/ is writable (a named volume mounted on
# var/keys or var/imports takes the ownership of the directory made here).
COPY . .
RUN pip install -e ".[postgres]" \
    && mkdir -p /app/var/keys /app/var/imports \
    && chown -R accounts:accounts /app/var

USER accounts

EXPOSE 8000

# No HEALTHCHECK here: the same image also runs the worker and the one-shot migrations. The API is up
# once its port accepts connections; docker-compose.yml checks that with this image's Python (no curl).
CMD ["accounts", "api"]
