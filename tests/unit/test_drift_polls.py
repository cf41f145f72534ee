"""The drift watch's polled readings (``agent.node.Poll``): a reading is a
change until podwall's next write rebases it, so the same rewrite made again
right after a repair, before the next poll, is noticed (the e2e twin:
``test_the_same_rewrite_right_after_a_repair_is_repaired``), and podwall's
own writes are not."""

from __future__ import annotations

import pytest

from firewall_operator.agent import node

GOOD, FLUSHED, OTHER = "entries: 3", "entries: 0", "entries: 4"


class Kernel:
    """A reading that the test sets, like ``ipset list -t`` would change."""

    def __init__(self) -> None:
        self.value = GOOD

    def read(self) -> str:
        return self.value


# each step: ("foreign" | "podwall", new value) or ("poll", expected answer)
Step = tuple[str, object]


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([("poll", False), ("poll", False)], id="steady"),
        pytest.param(
            [("foreign", FLUSHED), ("poll", True), ("poll", True), ("podwall", GOOD),
             ("poll", False)],
            id="a-change-stays-one-until-the-repair",
        ),
        pytest.param(
            [("foreign", FLUSHED), ("poll", True), ("podwall", GOOD), ("foreign", FLUSHED),
             ("poll", True), ("podwall", GOOD), ("poll", False)],
            id="flushed-again-after-the-repair-before-the-next-poll",
        ),
        pytest.param([("podwall", OTHER), ("poll", False)], id="podwall-s-own-write"),
    ],
)  # fmt: skip
def test_a_poll_compares_with_podwall_s_last_write(steps: list[Step]) -> None:
    kernel = Kernel()
    poll = node.Poll("podwall's ipsets", kernel.read, 2.0)
    for when, (kind, value) in enumerate(steps):
        if kind == "poll":
            assert poll.changed(float(when)) is value, f"step {when}: {steps}"
            continue
        kernel.value = str(value)
        if kind == "podwall":
            poll.rebase()


def test_a_poll_is_due_every_interval_after_it_ran() -> None:
    poll = node.Poll("the legacy filter table", lambda: GOOD, 1.0)
    poll.changed(100.0)
    assert poll.due == 101.0


def test_the_watch_rebases_every_poll_after_a_write() -> None:
    kernel = Kernel()
    watch = node.DriftWatch("iptables-legacy", lambda: None)
    watch._polls = [node.Poll("a", kernel.read, 1.0), node.Poll("b", kernel.read, 2.0)]
    kernel.value = OTHER
    watch.written()
    assert not any(poll.changed(0.0) for poll in watch._polls)
