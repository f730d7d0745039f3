from __future__ import annotations

from apiary.queen.scheduler import DroneView, pick_drone


def test_most_spare_capacity_wins() -> None:
    drones = [DroneView("a", capacity=4, running=3), DroneView("b", capacity=2, running=0)]
    assert pick_drone(drones) == "b"


def test_ties_go_to_the_faster_drone_then_to_one_with_the_plugins_then_by_id() -> None:
    slow, fast = DroneView("a", 2, 1, speed=1.0), DroneView("b", 2, 1, speed=3.0)
    assert pick_drone([slow, fast]) == "b"
    bare, equipped = DroneView("a", 1, 0), DroneView("b", 1, 0, plugins=frozenset({"node"}))
    assert pick_drone([bare, equipped], plugins=["node"]) == "b"
    assert pick_drone([DroneView("z", 1, 0), DroneView("m", 1, 0)]) == "m"


def test_no_drone_when_all_are_full_or_there_are_none() -> None:
    assert pick_drone([DroneView("a", 1, 1), DroneView("b", 2, 2)]) is None
    assert pick_drone([]) is None


def test_a_drone_that_never_installs_gets_only_jobs_whose_plugins_it_has() -> None:
    frozen = DroneView("a", 4, 0, plugins=frozenset({"shell"}), installs=False)
    busy_installer = DroneView("b", 1, 1)
    assert pick_drone([frozen, busy_installer], plugins=["shell"]) == "a"
    assert pick_drone([frozen, busy_installer], plugins=["shell", "apiary-hello==1.0"]) is None
    assert pick_drone([frozen, DroneView("c", 1, 0)], plugins=["apiary-hello==1.0"]) == "c"
