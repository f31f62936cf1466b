# Plait service image: the Python app plus the built web client.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PLAIT_HOST=0.0.0.0 PLAIT_PORT=8000 PLAIT_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api/ api/
COPY sync_server/ sync_server/
COPY persistence/ persistence/
RUN pip install --no-cache-dir . && useradd --system --uid 10001 plait && mkdir -p /data && chown plait /data
COPY --from=web /src/web/dist /app/web/dist
ENV PLAIT_WEB_DIST=/app/web/dist
USER plait
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
CMD ["plait", "serve"]
