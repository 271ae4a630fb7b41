"""Progress: the rate and ETA to the formula under a fake clock, the plain line log off a terminal."""

from __future__ import annotations

import io

import pytest

from difflab.utils.progress import Progress, format_duration


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Tty(io.StringIO):
    def isatty(self):
        return True


def make(total, clock, **kw):
    return Progress(total, "train", stream=io.StringIO(), clock=clock, **kw)


def test_rate_and_eta_from_the_steps_left():
    clock = Clock()
    p = make(100, clock)
    assert p.rate() is None and p.eta() is None
    clock.t += 4.0
    p.advance(20)
    assert p.rate() == pytest.approx(5.0)  # 20 steps in 4 s
    assert p.eta() == pytest.approx(16.0)  # 80 steps left at 5 /s


def test_eta_under_a_time_budget_is_the_sooner_end():
    # The bug of issue 19: 100000 steps at 2/s is 13.9 h, but the run stops after its minute.
    clock = Clock()
    p = make(100_000, clock, deadline_s=60.0)
    clock.t += 10.0
    p.advance(20)
    assert p.eta() == pytest.approx(50.0)
    # and when the steps end first, they decide
    q = make(30, clock, deadline_s=60.0)
    clock.t += 10.0
    q.advance(20)
    assert q.eta() == pytest.approx(5.0)


def test_resumed_units_count_for_the_bar_not_the_rate():
    clock = Clock()
    p = make(200, clock, start=100)
    clock.t += 10.0
    p.advance(10)
    assert p.completed == 110
    assert p.rate() == pytest.approx(1.0)
    assert p.eta() == pytest.approx(90.0)


def test_unknown_total_shows_count_and_budget_only():
    clock = Clock()
    p = make(None, clock, deadline_s=30.0)
    clock.t += 3.0
    p.advance(6)
    assert p.eta() == pytest.approx(27.0)
    assert p.summary().startswith("6 2 step/s")


def test_plain_lines_every_tenth_and_a_last_line():
    clock, out = Clock(), io.StringIO()
    with Progress(50, "sample", unit="call", stream=out, clock=clock) as p:
        for _ in range(50):
            clock.t += 0.1
            p.advance(1, loss=0.125)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # at 5, 10, ..., 50 (the last one also the closing line)
    assert lines[0] == "sample 5/50 (10%) loss=0.125 10 call/s elapsed 0:00 eta 0:04"
    assert lines[-1].startswith("sample 50/50 (100%)") and lines[-1].endswith("eta 0:00")


def test_plain_lines_every_ten_seconds_when_slow_and_a_closing_line():
    clock, out = Clock(), io.StringIO()
    p = Progress(1000, "train", stream=out, clock=clock)
    for _ in range(35):
        clock.t += 1.0
        p.advance(1)
    p.close()
    p.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["10/1000", "20/1000", "30/1000", "35/1000"]
    assert lines[-1].endswith("1 step/s elapsed 0:35 eta 16:05")  # 965 steps left at 1/s


def test_disabled_writes_nothing():
    out = io.StringIO()
    with Progress(10, "train", enabled=False, stream=out) as p:
        p.advance(10)
    assert out.getvalue() == ""


def test_terminal_gets_a_bar_with_text_printed_literally():
    out = Tty()
    with Progress(4, "runs/[/x] [bold]", stream=out) as p:
        p.advance(4, loss=0.5)
    text = out.getvalue()
    assert "runs/[/x] [bold]" in text and "4/4" in text and "loss=0.5" in text


def test_format_duration():
    assert format_duration(None) == "-"
    assert format_duration(float("inf")) == "-"
    assert format_duration(59.6) == "1:00"
    assert format_duration(3600 * 55 + 21 * 60 + 49) == "55:21:49"
