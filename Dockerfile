# siesta's image: built on Debian 12 with Debian's packages only, like everything in this repo.
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config prometheus-cpp-dev libcpp-httplib-dev nlohmann-json3-dev rapidjson-dev \
      libspdlog-dev libcli11-dev libboost-dev libssl-dev libyaml-dev \
      libhowardhinnant-date-dev && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DSIESTA_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target siesta

FROM debian:12-slim
# libdate-tz3 and tzdata: schedules' time zones (docs/schedules.md) are read from /usr/share/zoneinfo.
RUN apt-get update && apt-get install -y --no-install-recommends \
      libprometheus-cpp-core1.0 libcpp-httplib0.11 libspdlog1.10 libfmt9 libssl3 libyaml-0-2 \
      libdate-tz3 tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/siesta && chown 65534:65534 /var/lib/siesta
COPY --from=build /build/sidecar/siesta /usr/local/bin/siesta
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/siesta"]
