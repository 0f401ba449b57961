"""The paired benchmark runner names each printed figure the same way in every run."""

from __future__ import annotations

from tests.bench.bench_ab import figures

RUN = """C  gateway → no-op RPC:                 302 requests/s
   CPU per act, 13.2 ms in all: gateway 2.6, bench client 2.3, ferretdb 2.3
latency at 100 acts/s, POST → both effects (2000 acts):  p50 73 ms, p95 170 ms, p99 213 ms
batch intake (500 per call, 2 clients):     1343 acts/s  (10000 acts in 7.4s; target ≥ 2,000)
request path alone (consumers paused):   242 acts/s  (89% of C; 2435 acts)
   CPU per act, 7.7 ms in all: gateway 2.2, bench client 1.9
"""


def test_figures_are_named_by_their_words_not_by_their_place_or_other_numbers():
    found = figures(RUN)
    assert found["C  gateway → no-op RPC: # requests/s"] == 302
    single = "C  gateway → no-op RPC › CPU per act, # ms in all"
    assert found[f"{single}: # ms in all"] == 13.2
    assert found[f"{single}: bench client #"] == 2.3
    # The same words under another phase are another figure.
    assert found["request path alone (consumers paused) › CPU per act, # ms in all: # ms in all"] == 7.7
    assert found["latency at # acts/s, POST → both effects (# acts): p99 # ms"] == 213
    assert found["batch intake (# per call, # clients): # acts/s"] == 1343
    assert found["batch intake (# per call, # clients): # acts in #s [2]"] == 7.4
    assert found["batch intake (# per call, # clients): target ≥ #"] == 2000
    # Another run lists the processes in another order and with other numbers: same names.
    other = figures(RUN.replace("gateway 2.6, bench client 2.3", "bench client 2.9, gateway 2.1"))
    assert other.keys() == found.keys() and other[f"{single}: gateway #"] == 2.1
