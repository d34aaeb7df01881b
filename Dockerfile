# facemtl inference service, CPU only: the core install (ONNX Runtime, no PyTorch) + the HTTP service.
#   docker build -t facemtl .
#   docker run --rm -p 8000:8000 facemtl            # then open http://localhost:8000/
# The bundled weights are for non-commercial research only (NOTICE, MODEL_CARD.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 OMP_WAIT_POLICY=PASSIVE

WORKDIR /app
COPY pyproject.toml README.md LICENSE NOTICE MODEL_CARD.md ./
COPY src ./src
RUN pip install ".[serve]" && useradd --create-home --uid 10001 facemtl

USER facemtl
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["facemtl", "serve", "--host", "0.0.0.0", "--port", "8000"]
