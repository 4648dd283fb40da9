"""The words of explore's output: counts in agreement, rates, id ranges, the summary."""

from __future__ import annotations

from hypothesis import given, strategies as st

from patas.broker.run.coordinator import RunResult
from patas.broker.run.failures import AttemptFailure
from patas.broker.run.halt import Halt, Urgency
from patas.broker.run.scheduler import Counts, Verdict
from patas.cli.progress import compact_ids, rate_text, summary_lines
from patas.common.wording import plural
from patas.common.lab import Outcome


def test_plural_agrees_with_the_count():
    assert [plural(n, "node") for n in (0, 1, 2, 3000)] == ["0 nodes", "1 node", "2 nodes", "3,000 nodes"]
    assert plural(1, "repeat") == "1 repeat"


def test_rates_below_one_per_second_keep_decimals():
    assert rate_text(1, 4.0) == "0.25" and rate_text(1, 1.6) == "0.62"
    assert rate_text(3000, 12.0) == "250" and rate_text(0, 3.0) == "0" and rate_text(5, 0) == "0"


def test_compact_ids():
    assert compact_ids([12, 3, 7, 8, 9]) == "3, 7-9, 12"
    assert compact_ids(list(range(0, 100, 2)), limit=3) == "0, 2, 4 … (+47 more)"


def _expand(text: str) -> list[int]:
    ids = []
    for part in text.split(" … ")[0].split(", "):
        low, _, high = part.partition("-")
        ids.extend(range(int(low), int(high or low) + 1))
    return ids


@given(st.sets(st.integers(0, 10_000), min_size=1, max_size=60))
def test_compact_ids_shows_exactly_the_first_ids(ids):
    text = compact_ids(list(ids))
    assert _expand(text) == sorted(ids)[:12]
    assert (" … (+" in text) == (len(ids) > 12)


def failure(task_id: int, verdict: Verdict, exit_code: int = 1) -> AttemptFailure:
    return AttemptFailure(
        "grid", task_id, (("i", str(task_id)),), 1, 1, 1, Outcome.FAILED, exit_code, "", "node0", verdict,
        "Traceback\nValueError: bad\n", f"./run.py {task_id}", f"pataslab/grid/{task_id}/attempt-1.stderr",
    )  # fmt: skip


def test_the_summary_names_failed_tasks_by_kind_and_a_halt_says_why_and_the_exit_status():
    result = RunResult(Counts(total=100, done=3, failed=4), elapsed_s=2.0)
    for task_id, code in ((5, 1), (6, 1), (7, 1), (9, 2)):
        result.failures.add(failure(task_id, Verdict.GIVE_UP, code))
    result.failures.add(failure(11, Verdict.RETRY))
    result.halt = Halt(Urgency.NOW, "--halt now,fail=4: 4 tasks failed", True)
    assert summary_lines(result, ["pataslab/grid"]) == [
        "Stopped: --halt now,fail=4: 4 tasks failed; most common error: exit 1, 4 times: ValueError: bad;"
        " command: ./run.py 5; exit status 3",
        "Halted: 3 done, 4 failed in 2.0 s (4 tasks/s). Outputs in pataslab/grid",
        "93 tasks not run; run the same command again to run them.",
        "Failed 4 tasks:",
        "  exit 1: 3 tasks (grid 5-7); see: cat pataslab/grid/7/attempt-1.stderr",
        "  exit 2: 1 task (grid 9); see: cat pataslab/grid/9/attempt-1.stderr",
    ]
