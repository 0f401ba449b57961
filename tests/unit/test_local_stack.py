"""How `make run` starts: the demo data goes into a database once (later starts keep what staff
changed), and the gateway never starts on a port something else holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from deploy.local.stack import PortTaken, Stack, interrupt_on_sigterm, load_demo_data_once, main


def test_demo_data_is_loaded_once_per_database(tmp_path):
    loads = []
    marker = tmp_path / "demo-data.loaded"

    def load() -> None:
        loads.append(len(loads))

    assert load_demo_data_once(load, "mongodb://127.0.0.1:27017/", marker) is True
    assert load_demo_data_once(load, "mongodb://127.0.0.1:27017/", marker) is False
    assert len(loads) == 1
    # Another database has not had it.
    assert load_demo_data_once(load, "mongodb://db.example:27017/", marker) is True
    assert len(loads) == 2


def test_a_failed_load_is_tried_again_next_start(tmp_path):
    marker = tmp_path / "demo-data.loaded"

    def broken() -> None:
        raise ConnectionError("registry not answering")

    with pytest.raises(ConnectionError):
        load_demo_data_once(broken, "mongodb://127.0.0.1:27017/", marker)
    assert not marker.exists()
    assert load_demo_data_once(lambda: None, "mongodb://127.0.0.1:27017/", marker) is True


def test_nothing_starts_while_the_gateway_port_is_taken(tmp_path):
    """Something else on the port would pass for the new gateway (gunicorn keeps trying to
    bind it for seconds): an old gateway went on serving old code after `make start`."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = Stack(home=tmp_path, env={}, gateway_port=taken.getsockname()[1])
        with pytest.raises(PortTaken, match="is taken"):
            stack.start_all()
    assert stack.processes == {}


def test_sigterm_interrupts_like_ctrl_c_so_clean_up_stops_what_was_started():
    interrupt_on_sigterm()
    cleaned_up = []
    with pytest.raises(KeyboardInterrupt):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal arrives before this ends
        finally:
            cleaned_up.append(True)
    assert cleaned_up == [True]


def test_a_start_interrupted_by_ctrl_c_stops_what_it_started(monkeypatch):
    """Start-up takes minutes on a fresh machine; its processes run in sessions of their own,
    so an interrupted `make run` must stop them itself."""
    stopped = []

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Stack, "start_all", interrupted)
    monkeypatch.setattr(Stack, "stop_all", lambda self: stopped.append(True))
    with pytest.raises(KeyboardInterrupt):
        main("start")
    assert stopped == [True]


def test_stop_leaves_alone_a_process_whose_pid_a_stale_pid_file_names(tmp_path):
    """After a crash or reboot a pid file may outlive its process, and its pid name another."""
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "gateway.pid").write_text(str(stranger.pid))
        Stack(home=tmp_path, env={}).stop_all()
        assert stranger.poll() is None  # still running
        assert not (tmp_path / "run" / "gateway.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    "url",
    ["mongodb://db1:27017,db2:27017/?replicaSet=rs0", "mongodb+srv://cluster.example.org/"],
)
def test_a_database_of_several_hosts_or_an_srv_record_is_left_to_pymongo(tmp_path, url):
    stack = Stack(home=tmp_path, env={"MONGO_URL": url})
    stack.start_database()  # neither a parse error nor a local FerretDB
    assert stack.processes == {}


def test_make_run_against_another_machines_database_loads_no_demo_data_key_or_account(monkeypatch, capsys):
    """The demo key and account may do everything: never into a real database by accident."""
    import gateway.keys
    import gateway.staff
    from deploy.local import stack

    loaded = []
    monkeypatch.setenv("MONGO_URL", "mongodb://db.example.org:27017/")
    monkeypatch.delenv("GRIDLINK_LOAD_DEMO", raising=False)
    monkeypatch.setattr(Stack, "start_all", lambda self: None)
    monkeypatch.setattr(stack, "load_demo_data_once", lambda *args: loaded.append("data"))
    monkeypatch.setattr(gateway.keys, "ensure_demo_key", lambda path: loaded.append("key"))
    monkeypatch.setattr(gateway.staff, "ensure_demo_account", lambda path: loaded.append("account"))
    main("start")
    assert loaded == []
    assert "No demo data, key or account" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("marked", "running", "stopped"),
    [("boot-1 4242", "boot-1 4242", True), ("boot-1 4242", "boot-2 4242", False), ("None", None, False)],
    ids=["ours", "another-boot", "unknown"],
)
def test_stop_stops_the_broker_it_started_and_no_other(tmp_path, monkeypatch, marked, running, stopped):
    """The broker a start left running is stopped; one started since by someone else (after a
    reboot, say, when the marker outlived the broker it named) is left alone."""
    import deploy.local.stack as stack

    commands = []
    monkeypatch.setattr(stack, "running_broker", lambda: running)
    monkeypatch.setattr(stack.subprocess, "run", lambda command, **_: commands.append(command))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "rabbitmq.started").write_text(f"{marked}\n")
    Stack(home=tmp_path, env={}).stop_all()
    assert (["rabbitmqctl", "-q", "stop"] in commands) is stopped
    assert not (tmp_path / "run" / "rabbitmq.started").exists()
