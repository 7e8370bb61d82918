# facezoo's production service on CPU: `facezoo serve --backend asgi` (Starlette on uvicorn).
#   docker build -t facezoo-serve .
#   docker run -p 8080:8080 -e FACEZOO_API_KEY="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" \
#       -v "$PWD/deploy:/data" facezoo-serve --model /data/model.pt --gallery /data/gallery.db --workers 2
# /data holds the model (a facezoo .pt or .onnx) and the gallery (created if absent; or pass a postgresql:// URL).
FROM python:3.11-slim

# torch pinned, CPU build (PyTorch's CPU wheel index; override with --build-arg TORCH_INDEX=... for a mirror)
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN pip install "torch==2.13.0" --index-url "$TORCH_INDEX"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve,onnx,pgvector]" \
    && useradd --create-home --uid 10001 facezoo \
    && mkdir /data && chown facezoo /data

# The default detector's weights (MTCNN, from the facenet-pytorch wheel, sha256-checked) fetched at build time:
# the container needs no network at run time. Other named models: add `facezoo models fetch NAME` here.
ENV FACEZOO_HOME=/opt/facezoo
RUN facezoo models fetch mtcnn

USER facezoo
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
ENTRYPOINT ["facezoo", "serve", "--backend", "asgi", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--model", "/data/model.pt", "--gallery", "/data/gallery.db"]
