# Ollama: tests/support/ollama_emulator.py (Ollama's API, no GPU, no models to download),
# listening where OLLAMA_HOST says, as Ollama does.
ARG BASE
FROM ${BASE}
COPY ollama_emulator.py /usr/local/bin/ollama_emulator.py
ENTRYPOINT ["sh", "-c", "exec python3 /usr/local/bin/ollama_emulator.py --port \"${OLLAMA_HOST##*:}\" --load-ms 300"]
