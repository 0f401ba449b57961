"""The audit trail's files (shared/audit.py): one JSON line per record, whole, per day; and the
gateway's reader of them (gateway/audit.py)."""

from __future__ import annotations

import json
import multiprocessing
from datetime import date

import pytest

from gateway import audit
from gateway.audit import is_audited
from shared import audit as trails
from shared.audit import AuditTrail, records


def test_writes_and_refusals_are_audited_successful_reads_are_not():
    assert is_audited("POST", 202) and is_audited("POST", 422) and is_audited("DELETE", 204)
    assert is_audited("GET", 401) and is_audited("GET", 403) and is_audited("GET", 429)
    assert not is_audited("GET", 200) and not is_audited("GET", 404)


def test_records_from_several_processes_are_whole_lines_of_the_day(tmp_path, monkeypatch):
    monkeypatch.setattr(trails, "local_today", lambda: date(2026, 12, 7))
    trail = AuditTrail(tmp_path)
    trail.record({"request_id": "parent-0", "note": "房屋漏水" * 50})
    # gunicorn forks its workers: each child appends to the same file through its own descriptor.
    context = multiprocessing.get_context("fork")

    def worker(n: int) -> None:
        for i in range(200):
            trail.record({"request_id": f"child-{n}-{i}", "note": "房屋漏水" * 50})

    children = [context.Process(target=worker, args=(n,)) for n in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(20)
    trail.record({"request_id": "parent-1"})

    lines = (tmp_path / "audit-2026-12-07.jsonl").read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["request_id"] for line in lines]  # every line parses: none interleaved
    assert len(ids) == 602 and set(ids) == {"parent-0", "parent-1"} | {
        f"child-{n}-{i}" for n in range(3) for i in range(200)
    }
    assert [r["request_id"] for r in records(tmp_path, date(2026, 12, 7))] == ids
    assert "time" in json.loads(lines[0])


def test_a_new_day_starts_a_new_file(tmp_path, monkeypatch):
    today = [date(2026, 12, 7)]
    monkeypatch.setattr(trails, "local_today", lambda: today[0])
    trail = AuditTrail(tmp_path)
    trail.record({"request_id": "a"})
    today[0] = date(2026, 12, 8)
    trail.record({"request_id": "b"})
    assert [r["request_id"] for r in records(tmp_path, date(2026, 12, 7))] == ["a"]
    assert [r["request_id"] for r in records(tmp_path, date(2026, 12, 8))] == ["b"]
    assert list(records(tmp_path, date(2026, 12, 9))) == []


def test_the_reader_filters_by_actor_outcome_and_action(tmp_path, monkeypatch, capsys):
    for module in (audit, trails):
        monkeypatch.setattr(module, "local_today", lambda: date(2026, 12, 7))
    monkeypatch.setattr(audit, "get_settings", lambda: type("S", (), {"audit_dir": tmp_path}))
    trail = AuditTrail(tmp_path)
    trail.record({"actor": "街道", "action": "POST /api/v1/volunteer-acts", "status": 202})
    trail.record({"actor": "街道", "action": "POST /api/v1/points/awards", "status": 403})
    trail.record({"actor": None, "action": "GET /api/v1/people", "status": 401})
    assert audit.main(["--actor", "街道", "--outcome", "403"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["action"] == "POST /api/v1/points/awards"
    audit.main(["--action", "volunteer-acts", "--day", "2026-12-07"])
    assert [json.loads(x)["status"] for x in capsys.readouterr().out.splitlines()] == [202]


@pytest.mark.parametrize("argv", [["--day", "2026-13-01"], ["--outcome", "forbidden"]])
def test_the_reader_refuses_bad_arguments_naming_them(argv, capsys):
    with pytest.raises(SystemExit):
        audit.main(argv)
    assert argv[0] in capsys.readouterr().err


def test_a_command_that_fails_partway_is_recorded_as_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(trails, "get_settings", lambda: type("S", (), {"audit_dir": tmp_path}))
    monkeypatch.setattr(trails, "local_today", lambda: date(2026, 12, 7))
    tried = trails.failure_recorded("shared.parked", "replay", {"service": "points_bank"})
    with pytest.raises(RuntimeError, match="broker gone"), tried:
        raise RuntimeError("broker gone")
    [record] = records(tmp_path, date(2026, 12, 7))
    assert (record["action"], record["status"]) == ("shared.parked replay", 2)
    assert record["target"]["service"] == "points_bank" and "broker gone" in record["target"]["failed"]
