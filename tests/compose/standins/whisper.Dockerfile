ARG BASE
FROM ${BASE}
COPY http_standin.py /usr/local/bin/http_standin.py
ENTRYPOINT ["sh", "-c", "exec python3 /usr/local/bin/http_standin.py whisper 127.0.0.1 \"$WHISPER_PORT\""]
