"""Reconciliation: proves, from the entries alone, that the points bank adds up.

    python -m services.points.reconcile [--repair]

Checks that every account's chain is unbroken (its entries are exactly seq 1..n), that the
balance readers see equals the sum of the account's entries, that every transfer has both of
its legs, that all accounts together sum to zero, and that the month files the reports read
(`LedgerFiles`) count exactly what their pool's entries earned. `--repair` rewrites summaries
that are behind their chain (a crash between an entry and its summary write), completes
transfers that lost their second leg and corrects month files by a correcting filing; all are
safe to run at any time, the services running or not. Exit status 1 if anything is off
(with `--repair`: still off once repaired).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.points import domain

if TYPE_CHECKING:
    from services.points.store import PointsStore


@dataclass
class Report:
    accounts: int = 0
    entries: int = 0
    total: int = 0  # the sum over every account: zero when every transfer is whole
    broken_chains: list[str] = field(default_factory=list)
    stale_summaries: list[str] = field(default_factory=list)
    one_legged: list[str] = field(default_factory=list)
    month_files_off: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        off = self.broken_chains or self.stale_summaries or self.one_legged or self.month_files_off
        return self.total == 0 and not off

    def lines(self) -> list[str]:
        verdict = "exact" if self.exact else "NOT exact"
        found = [
            f"{self.accounts} accounts, {self.entries} entries, sum of all balances {self.total}: {verdict}"
        ]
        for label, items in (
            ("chains with a gap", self.broken_chains),
            ("summaries behind their chain", self.stale_summaries),
            ("transfers missing a leg", self.one_legged),
            ("month files off their pool's entries", self.month_files_off),
        ):
            if items:
                found.append(f"{label} ({len(items)}): {', '.join(sorted(items)[:20])}")
        return found


def check(
    chains: Iterable[dict[str, Any]],
    summaries: dict[str, dict[str, Any]],
    one_legged: list[str],
    month_files_off: Iterable[str] = (),
) -> Report:
    """`chains`: per account {_id, sum, count, seq_sum} of its entries."""
    report = Report(one_legged=list(one_legged), month_files_off=sorted(month_files_off))
    for chain in chains:
        account, count = chain["_id"], chain["count"]
        report.accounts += 1
        report.entries += count
        report.total += chain["sum"]
        # Seqs are distinct (they are in the entries' _id); n distinct positive numbers that
        # add up to n(n+1)/2 are exactly 1..n.
        if chain["seq_sum"] != count * (count + 1) // 2:
            report.broken_chains.append(account)
        summary = summaries.get(account) or domain.empty_account(account)
        if (summary["balance"], summary["seq"]) != (chain["sum"], count):
            report.stale_summaries.append(account)
    return report


def missing_leg(present: dict[str, Any]) -> domain.Transfer:
    """The transfer a lone leg belongs to, rebuilt from the leg with all its facts, to apply
    again (the present leg's guard makes that a no-op for it)."""
    sender, receiver = present["key"], present["counterparty"]
    if present["points"] > 0:
        sender, receiver = receiver, sender
    facts = {k: v for k, v in present.items() if k not in domain.LEG_FIELDS}
    return domain.Transfer(
        id=present["transfer_id"],
        kind=present["kind"],
        from_account=sender,
        to_account=receiver,
        points=abs(present["points"]),
        community_id=present["community_id"],
        reason=present.get("reason"),
        actor=present.get("actor"),
        reverses=present.get("reverses"),
        facts=facts,
    )


def main(argv: list[str] | None = None) -> int:
    from services.points.store import PointsStore
    from shared.audit import failure_recorded, record_command
    from shared.events import POINTS_BANK
    from shared.mongo import connect
    from shared.settings import local_zone

    parser = argparse.ArgumentParser(prog="python -m services.points.reconcile", description=__doc__)
    parser.add_argument(
        "--repair",
        action="store_true",
        help="heal stale summaries, one-legged transfers and month files off their entries",
    )
    options = parser.parse_args(argv)
    store = PointsStore(connect(POINTS_BANK))
    started = datetime.now(UTC)
    report = examined(store)
    # Months are the services' local ones: checked in another zone, entries near midnight
    # would seem filed in the wrong month.
    print(f"months in {local_zone()} (GRIDLINK_TIMEZONE): the services' own, or files seem off")
    if options.repair and not report.exact:
        with failure_recorded("services.points.reconcile", "repair", {}):
            repaired = repair(store, report)
        print("after the repairs:")
        report = examined(store)
        record_command("services.points.reconcile", "repair", repaired, 0 if report.exact else 1)
    print(f"checked in {(datetime.now(UTC) - started).total_seconds():.1f}s")
    return 0 if report.exact else 1


def examined(store: PointsStore) -> Report:
    """The points bank checked, and the report printed."""
    chains = store.chain_totals()
    summaries = store.stored_summaries_of([c["_id"] for c in chains])
    files = store.ledger_files
    report = check(chains, summaries, store.one_legged_transfers(), files.audit(files.read_pools()))
    for line in report.lines():
        print(line)
    return report


def repair(store: PointsStore, report: Report) -> dict[str, list[str]]:
    """Complete what a crash left half-done, then correct the month files; what was repaired."""
    for transfer_id in report.one_legged:
        legs = store.legs_of(transfer_id)
        if len(legs) == 1:
            store.execute(missing_leg(legs[0]))
    for account in report.stale_summaries:
        store.ledger.heal(account)
    store.write_behind()  # this process stops now: store the summaries of the new legs
    # After the legs: a completed transfer's pool leg counts in its month.
    files = store.ledger_files
    pools = files.read_pools()
    corrected = [key for key in files.audit(pools) if files.correct(key, pools)]
    files.months.write_summaries()
    print(
        f"repaired {len(report.one_legged)} transfers, {len(report.stale_summaries)} summaries"
        f" and {len(corrected)} month files"
    )
    return {"transfers": report.one_legged, "summaries": report.stale_summaries, "month_files": corrected}


if __name__ == "__main__":
    sys.exit(main())
