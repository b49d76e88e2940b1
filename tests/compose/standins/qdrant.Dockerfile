ARG BASE
FROM ${BASE}
COPY http_standin.py /usr/local/bin/http_standin.py
ENTRYPOINT ["sh", "-c", "exec python3 /usr/local/bin/http_standin.py qdrant \"$QDRANT__SERVICE__HOST\" \"$QDRANT__SERVICE__HTTP_PORT\""]
