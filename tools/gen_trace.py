#!/usr/bin/env python3
"""Synthetic request traces for `siesta simulate` (docs/policies.md), with fixed seeds.

    tools/gen_trace.py KIND [--seed N] [--days D] [--service NAME] > trace.csv

KIND: poisson (requests at a constant rate), diurnal (working hours busy, nights and weekends
quiet), bursty (sessions of requests minutes apart, hours between sessions), periodic (a job
every period, with jitter). Prints CSV: time,service,model,duration (seconds from 0).
The same seed gives the same trace on every run and machine (random.Random's Mersenne Twister).
"""
import argparse
import math
import random
import sys

DAY = 86400.0


def poisson(rng, days, rate_per_hour=0.8):
    t = rng.expovariate(rate_per_hour / 3600)
    while t < days * DAY:
        yield t
        t += rng.expovariate(rate_per_hour / 3600)


def diurnal(rng, days):
    # Weekdays 08:30-18:00: requests ~6 min apart on average, a lunch lull; nothing at night
    # nor on weekends.
    for day in range(int(days)):
        if day % 7 in (5, 6):
            continue
        t = day * DAY + 8.5 * 3600 + rng.uniform(0, 900)
        end = day * DAY + 18 * 3600
        while t < end:
            yield t
            hour = (t - day * DAY) / 3600
            mean = 25 * 60 if 12 <= hour < 13.5 else 6 * 60
            t += rng.expovariate(1 / mean)


def bursty(rng, days):
    # Sessions of 5-40 requests, ~4 min apart (some longer pauses), 6-30 h between sessions.
    t = rng.uniform(0, 6 * 3600)
    while t < days * DAY:
        for _ in range(rng.randint(5, 40)):
            yield t
            t += rng.expovariate(1 / 240) if rng.random() < 0.9 else rng.uniform(600, 1800)
        t += rng.uniform(6 * 3600, 30 * 3600)


def periodic(rng, days, period=30 * 60, jitter=120):
    k = 0
    while True:
        t = k * period + rng.uniform(-jitter, jitter) + jitter
        if t >= days * DAY:
            return
        yield t
        k += 1


KINDS = {"poisson": poisson, "diurnal": diurnal, "bursty": bursty, "periodic": periodic}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--days", type=float, default=14)
    p.add_argument("--service", default=None, help="default: the kind's name")
    p.add_argument("--start", default=None, metavar="YYYY-MM-DD",
                   help="the date (UTC) day 0 falls on, so that a schedule's days line up with "
                        "the trace's (diurnal's day 0 is a weekday: give a Monday); default: "
                        "times from 0, 1970-01-01, a Thursday")
    a = p.parse_args()
    offset = 0.0
    if a.start is not None:
        import datetime
        try:
            day0 = datetime.datetime.strptime(a.start, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            p.error(f"--start: must be a date YYYY-MM-DD, got {a.start!r}")
        offset = day0.timestamp()
    rng = random.Random(a.seed)
    service = a.service or a.kind
    out = sys.stdout
    out.write("time,service,model,duration\n")
    for t in KINDS[a.kind](rng, a.days):
        # A request runs 1-20 s once the service is up.
        out.write(f"{t + offset:.1f},{service},,{rng.uniform(1, 20):.1f}\n")


if __name__ == "__main__":
    main()
