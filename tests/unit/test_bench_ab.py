"""The paired benchmark runner names each printed figure the same way in every run."""

from __future__ import annotations

from tests.bench.bench_ab import figures

RUN = """C  gateway → no-op RPC:                 302 requests/s
   CPU per act, 13.2 ms in all: gateway 2.6, bench client 2.3, ferretdb 2.3
latency at 100 acts/s, POST → both effects (2000 acts):  p50 73 ms, p95 170 ms, p99 213 ms
batch intake (500 per call, 2 clients):     1343 acts/s  (10000 acts in 7.4s; target ≥ 2,000)
"""


def test_figures_are_named_by_their_words_not_by_their_place_or_other_numbers():
    found = figures(RUN)
    assert found["C  gateway → no-op RPC: # requests/s"] == 302
    assert found["CPU per act, # ms in all: # ms in all"] == 13.2
    assert found["CPU per act, # ms in all: bench client #"] == 2.3
    assert found["latency at # acts/s, POST → both effects (# acts): p99 # ms"] == 213
    assert found["batch intake (# per call, # clients): # acts/s"] == 1343
    assert found["batch intake (# per call, # clients): # acts in #s [2]"] == 7.4
    assert found["batch intake (# per call, # clients): target ≥ #"] == 2000
    # Another run lists the processes in another order and with other numbers: same names.
    other = figures(RUN.replace("gateway 2.6, bench client 2.3", "bench client 2.9, gateway 2.1"))
    assert other.keys() == found.keys() and other["CPU per act, # ms in all: gateway #"] == 2.1
