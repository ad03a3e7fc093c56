# The course's HTTP server (python -m minilm serve) in a container, on CPU.
#   docker build -t minilm .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/stories:/checkpoint:ro" minilm
# See docs/deployment.md. The server has no authentication: keep it behind a proxy that has.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# PyTorch first, from its CPU-only index (a few hundred MB instead of several GB of CUDA libraries);
# `pip install .` then finds torch already there.
RUN pip install "torch>=2.13" --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY minilm ./minilm
RUN pip install . && rm -rf /app/minilm /app/build

RUN useradd --create-home --uid 1000 minilm
USER minilm
WORKDIR /home/minilm

# The checkpoint folder (checkpoint.json and its step folder), mounted read-only at run time.
VOLUME /checkpoint
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["python", "-m", "minilm", "serve", "--checkpoint", "/checkpoint", "--host", "0.0.0.0", "--port", "8000"]
