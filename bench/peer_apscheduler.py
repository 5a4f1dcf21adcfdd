"""The peer of rcron-bench: APScheduler (PyPI), in-process, with the same load.

N jobs with a cron trigger firing every second (``second='*'``), a misfire
grace of 5 s and no coalescing (as rcron's worker), and an executor that
runs nothing: it records the lag from each run's scheduled time to the
moment APScheduler hands it to the executor — the moment a run would be
spawned, as rcron-bench measures for rcron.

Usage: python peer_apscheduler.py N SECONDS
Prints one tab-separated line in rcron-bench's format:
jobs ticks missed p50_ms p99_ms max_ms cpu_percent rss_mib peak_rss_mib
"""

import resource
import sys
import threading
import time

from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger


class Window:
    def __init__(self, start, seconds):
        self.start = start
        self.end = start + seconds
        self.lags = []
        self.missed = 0
        self.lock = threading.Lock()

    def inside(self, planned):
        return self.start <= planned < self.end


class RecordingExecutor(BaseExecutor):
    """Records the lag of every run handed to it and runs nothing."""

    def __init__(self, window):
        super().__init__()
        self.window = window

    def submit_job(self, job, run_times):
        now = time.time()
        w = self.window
        with w.lock:
            for planned in run_times:
                t = planned.timestamp()
                if w.inside(t):
                    w.lags.append(now - t)

    def _do_submit_job(self, job, run_times):
        pass


def noop():
    pass


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    i = max(0, min(len(sorted_values) - 1, int(len(sorted_values) * p + 0.999999) - 1))
    return sorted_values[i]


def main():
    n = int(sys.argv[1])
    seconds = int(sys.argv[2])
    # Measure from 2 s after the jobs are loaded, as rcron-bench does.
    window = Window(0.0, seconds)
    scheduler = BackgroundScheduler(
        executors={"default": RecordingExecutor(window)},
        job_defaults={"misfire_grace_time": 5, "coalesce": False, "max_instances": 1},
        timezone="UTC",
    )

    def on_missed(event):
        if window.inside(event.scheduled_run_time.timestamp()):
            with window.lock:
                window.missed += 1

    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    trigger = CronTrigger(second="*", timezone="UTC")
    for i in range(n):
        scheduler.add_job(noop, trigger, id=f"bench-{i}", name=f"bench-{i}")
    start = float(int(time.time()) + 3)
    window.start = start
    window.end = start + seconds
    scheduler.start()
    time.sleep(max(0.0, start - time.time()))
    cpu_before, wall_before = cpu_seconds(), time.time()
    time.sleep(seconds)
    cpu = (cpu_seconds() - cpu_before) / (time.time() - wall_before) * 100.0
    rss, hwm = status_kib("VmRSS:"), status_kib("VmHWM:")
    time.sleep(1.1)
    scheduler.shutdown(wait=False)
    with window.lock:
        lags = sorted(window.lags)
        missed = window.missed
    print(
        "\t".join(
            [
                str(n),
                str(len(lags)),
                str(missed),
                f"{percentile(lags, 0.50) * 1000:.3f}",
                f"{percentile(lags, 0.99) * 1000:.3f}",
                f"{(lags[-1] if lags else 0.0) * 1000:.3f}",
                f"{cpu:.1f}",
                str(rss // 1024),
                str(hwm // 1024),
            ]
        )
    )


if __name__ == "__main__":
    main()
