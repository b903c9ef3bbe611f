# The certrecon worker image. Production points it at PostgreSQL and Apache Kafka through
# CERTRECON_DATABASE_URL and CERTRECON_KAFKA_BOOTSTRAP (see docker-compose.yml); passwords,
# certificates and keys are mounted as files (secrets) and named by the *_FILE settings.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --create-home --uid 10001 certrecon
WORKDIR /app
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md ./
COPY sql sql
COPY src src
RUN pip install --no-cache-dir -c requirements/constraints.txt . \
    && rm -rf /root/.cache

USER certrecon
# /healthz and /readyz and /metrics
EXPOSE 8008
ENV CERTRECON_HTTP_HOST=0.0.0.0 \
    CERTRECON_HTTP_PORT=8008
ENTRYPOINT ["certrecon"]
CMD ["run"]
