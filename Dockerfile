# The ModelDB image used by docker-compose.yaml: one image, every process (`modeldb serve`,
# `writer`, `project --projection ...`, `api`, `migrate`) chosen by its command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from: no .git, .infra or local data in the image.
COPY pyproject.toml README.md ./
COPY event_schema/ event_schema/
COPY client/ client/
COPY ingest_adapters/ ingest_adapters/
COPY writer/ writer/
COPY projectors/ projectors/
COPY query_api/ query_api/
COPY infra/ infra/
RUN pip install ".[server,kafka,postgres,neo4j]"

RUN useradd --create-home --uid 10001 modeldb && mkdir /data && chown modeldb /data
USER modeldb
WORKDIR /data
ENV MODELDB_HOME=/data
VOLUME ["/data"]
EXPOSE 8000

CMD ["modeldb", "serve", "--host", "0.0.0.0", "--port", "8000"]
