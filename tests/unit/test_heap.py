"""The heap is settled once each process is ready (see shared/heap.py)."""

from __future__ import annotations

import gc
import runpy
import weakref
from pathlib import Path

import pytest
from nameko.containers import ServiceContainer
from nameko.testing.utils import get_extension

from services.cadres.service import CadreEvaluation
from services.intake.service import IssueIntake
from services.points.service import PointsBank
from services.registry.service import OrganisationRegistry
from shared.heap import SettledHeap

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "gateway" / "gunicorn.conf.py"


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settling_freezes_what_exists_and_later_objects_stay_collectable(unfrozen):
    SettledHeap().start()
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the interpreter, pytest and the services imported above
    cycle = Node()
    cycle.me = cycle
    made_later = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert made_later() is None
    assert gc.get_freeze_count() == frozen


class Node:
    me: Node


@pytest.mark.parametrize("service", [IssueIntake, PointsBank, CadreEvaluation, OrganisationRegistry])
def test_every_service_settles_its_heap_when_its_container_starts(service):
    container = ServiceContainer(service, config={"AMQP_URI": "memory://"})
    assert isinstance(get_extension(container, SettledHeap), SettledHeap)


def test_each_gateway_worker_settles_its_heap_once_the_app_is_loaded(unfrozen):
    settings = runpy.run_path(str(GUNICORN_CONF))
    settings["post_worker_init"](worker=None)
    assert gc.get_freeze_count() > 10_000
