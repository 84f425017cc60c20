#!/usr/bin/python3
"""The lab's page in a real browser (headless Chromium through Selenium).

Started by tests/lab_browser.rs with the lab binary's path. It starts the lab, opens its page,
runs the page's pure functions, waits for traffic on the charts, stops a replica with the
page's own button and sees it leave rotation while B keeps answering, restarts it and sees it
back, sets a 300 ms tail on every replica from the page and sees B's p99 rise, kills a
replica, follows one request through B and the replicas, and saves screenshots. Every wait is bounded; on a
failure it saves a screenshot, prints the page's visible text, and exits 1.

    /usr/bin/python3 tests/browser/lab_page.py --lab target/debug/lab \\
        --bin-dir target/debug --out target/lab-screenshots [--docs docs/lab.png]

Run it with Debian's /usr/bin/python3, whose python3-selenium drives Debian's chromium.
"""

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

# Chromium as root, on a machine without network: without these it stalls or refuses.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1500",
]

LAB_START = 30  # s: the lab starts four services first
TRAFFIC = 20  # s: until the charts show answers
OUT_OF_ROTATION = 5  # s: how soon a stopped replica must show as out of rotation
BACK_IN_ROTATION = 60  # s: B's balancer tries a replica again once its cost has decayed
P99_RISE = 15  # s: a 300 ms tail on every replica shows in B's p50 and p99
LAB_EXIT = 10  # s: after SIGTERM


class Failed(Exception):
    """A check that did not hold."""


def say(text):
    print(text, flush=True)


def wait_for(what, seconds, check):
    """Calls `check` until it returns something true, for at most `seconds`; returns it."""
    end = time.monotonic() + seconds
    last_error = None
    while time.monotonic() < end:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # an element not there yet, a stale one
            last_error = e
        time.sleep(0.2)
    raise Failed(f"{what}: not within {seconds} s" + (f" (last error: {last_error})" if last_error else ""))


class Lab:
    """The lab binary in a process group of its own, its address read from its first line."""

    def __init__(self, binary, bin_dir):
        env = dict(os.environ)
        env.pop("CARGO", None)  # else the lab would run cargo to build the services
        # Its own session, so that `kill` can end the lab and its children together; stderr
        # into the same pipe, so that its errors are read, and no pipe of ours outlives it.
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--rate", "50", "--bin-dir", bin_dir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env, start_new_session=True,
        )
        lines = queue.Queue()

        def read():
            for line in self.process.stdout:
                lines.put(line)
                if not line.startswith("lab: open "):
                    say("lab | " + line.rstrip())

        threading.Thread(target=read, daemon=True).start()
        end = time.monotonic() + LAB_START
        while True:
            try:
                line = lines.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                raise Failed(f"the lab did not print its address within {LAB_START} s")
            if line.startswith("lab: open "):
                self.url = line.split(" ", 2)[2].strip()
                return

    def stop(self):
        """SIGTERM, and the exit status; the group is killed if the lab does not exit."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=LAB_EXIT)
        finally:
            self.kill()

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def browser():
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="lab-chromium-")
    options.add_argument("--user-data-dir=" + profile)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(15)
    driver.set_script_timeout(5)
    return driver, profile


def number(driver, element_id):
    """The number shown in an element, or None for `–`."""
    text = driver.find_element(By.ID, element_id).text.strip()
    try:
        return float(text)
    except ValueError:
        return None


def check_pure_functions(driver):
    """The page's pure functions, run in the page itself."""
    results = driver.execute_script("""
        const lab = window.lab;
        const points = [{t: 0, perS: {timeout: 1}}, {t: 0.5, perS: {"200": 10, connect: 2}}];
        const lines = [{seq: 1, src: "B", line: {request_id: "lab-1", trace_id: "t1"}},
                       {seq: 2, src: "A1", line: {request_id: "lab-1", trace_id: "t1"}},
                       {seq: 3, src: "B", line: {request_id: "lab-2", trace_id: "t2"}}];
        return {
          trimmed: lab.pushPoint([1, 2, 3], 4, 3),
          outcomes: lab.outcomesIn(points),
          nice: [lab.niceMax(0), lab.niceMax(37), lab.niceMax(120), lab.niceMax(0.3)],
          polyline: lab.polyline(points, p => p.perS["200"], 0, 1, 20, 100, 50),
          body: lab.faultsBody({tail_rate: "1", tail_delay_ms: "300", fail_rate: "", blackhole: false}),
          faults: lab.faultsText({tail_rate: 1, tail_delay_ms: 300, fail_rate: 0.2, blackhole: true}),
          text: lab.lineText({ts: "2026-12-02T05:30:42.811Z", level: "INFO", method: "GET", status: 200,
                              error: "two words", request_id: "lab-0"}),
          merged: lab.mergeLines(lines.slice(0, 2), lines.slice(1), 10).map(l => l.seq),
          path: lab.linesWithId(lines, "t1").map(l => l.src),
          ids: lab.idsOf({request_id: "lab-9", trace_id: "abc"}),
          queued: [lab.queuedIn([{capacity: {queue: 2}}, {capacity: null}, {capacity: {queue: 3}}]),
                   lab.queuedIn([{capacity: null}])],
          dropped: [lab.droppedText({deadline: 0, queue_full: 2.5}), lab.droppedText({})],
          capacity: lab.capacityBody("1", "20", "0", "codel-lifo"),
          capacityText: lab.faultsText({workers: 1, work_ms: 20, queue_limit: 5, queue_policy: "codel-lifo"}),
        };
    """)
    expected = {
        "trimmed": [2, 3, 4],
        "outcomes": ["200", "connect", "timeout"],
        "nice": [1, 50, 200, 0.5],
        "polyline": "50.0,25.0",
        "body": {"tail_rate": 1, "tail_delay_ms": 300, "blackhole": False},
        "faults": "black hole, tail 100 % +300 ms, fail 20 %",
        "text": '05:30:42.811 method=GET status=200 error="two words"',
        "merged": [1, 2, 3],
        "path": ["B", "A1"],
        "ids": [["request_id", "lab-9"], ["trace_id", "abc"]],
        "queued": [5, None],
        "dropped": ["queue_full 2.5", "0"],
        "capacity": {"workers": 1, "work_ms": 20, "queue_limit": 0, "queue_policy": "codel-lifo"},
        "capacityText": "capacity 1 x 20 ms, queue at most 5, codel-lifo",
    }
    for name, want in expected.items():
        if results[name] != want:
            raise Failed(f"pure function {name}: got {results[name]!r}, want {want!r}")
    say(f"ok: the page's pure functions ({len(expected)} checks)")


def total_200(driver):
    try:
        return int(driver.find_element(By.ID, "total-200").text)
    except Exception:
        return 0


def replica(driver, n, field):
    """Replica n's `data-…` value of a field: its process or B's view of it."""
    element = driver.find_element(By.ID, f"replica-{n}-{field}")
    return element.get_attribute("data-" + field)


def run(driver, lab, out, docs):
    driver.get(lab.url)
    check_pure_functions(driver)

    wait_for("traffic on the charts", TRAFFIC, lambda: (
        driver.execute_script("return window.lab.state.points.length") >= 4
        and total_200(driver) > 0
        and driver.find_element(By.CSS_SELECTOR, '#chart-answers polyline[data-series="200"]').get_attribute("points")
    ))
    say(f"ok: the charts show traffic ({total_200(driver)} answers 200 so far, p99 {number(driver, 'p99')} ms)")
    driver.save_screenshot(os.path.join(out, "1-traffic.png"))

    before = total_200(driver)
    stop = driver.find_element(By.ID, "replica-2-stop")
    stop.click()
    clicked = time.monotonic()
    state = wait_for("A2 out of rotation", OUT_OF_ROTATION, lambda: (
        replica(driver, 2, "process") in ("stopping", "exited")
        and replica(driver, 2, "state") in ("avoided", "ejected", "unreachable")
        and total_200(driver) > before
        and replica(driver, 2, "state")
    ))
    say(f"ok: A2 stopped from the page: {state} after {time.monotonic() - clicked:.1f} s; "
        f"answers 200 went on, {before} -> {total_200(driver)}")
    driver.save_screenshot(os.path.join(out, "2-stopped.png"))

    driver.find_element(By.ID, "replica-2-restart").click()
    clicked = time.monotonic()
    wait_for("A2 back in rotation", BACK_IN_ROTATION, lambda: (
        replica(driver, 2, "process") == "running" and replica(driver, 2, "state") == "in_rotation"
    ))
    say(f"ok: A2 restarted from the page, back in rotation after {time.monotonic() - clicked:.1f} s")

    for knob, value in (("cap-workers", "1"), ("cap-work-ms", "20")):
        field = driver.find_element(By.ID, knob)
        field.clear()
        field.send_keys(value)
    driver.find_element(By.ID, "cap-apply").click()
    wait_for("every replica's capacity shown", 5, lambda: all(
        "capacity 1 x 20 ms" in driver.find_element(By.ID, f"replica-{n}-faults").text
        for n in (1, 2, 3)
    ))
    busy = wait_for("A1's queue and workers in the capacity table", 5, lambda: (
        [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#capacity-1 td")][1:3]
        if driver.find_elements(By.CSS_SELECTOR, "#capacity-1 td")[1].text != "–" else None
    ))
    say(f"ok: a capacity of 1 worker x 20 ms on every replica, set from the page; A1's queue "
        f"and workers busy: {busy}")
    driver.find_element(By.ID, "cap-off").click()
    wait_for("the capacity model off again", 5, lambda: not any(
        "capacity" in driver.find_element(By.ID, f"replica-{n}-faults").text for n in (1, 2, 3)
    ))

    p99_before = number(driver, "p99")
    for n in (1, 2, 3):
        for knob, value in (("tail-rate", "1"), ("tail-delay-ms", "300")):
            field = driver.find_element(By.ID, f"replica-{n}-{knob}")
            field.clear()
            field.send_keys(value)
        driver.find_element(By.ID, f"replica-{n}-apply").click()
        wait_for(f"A{n}'s tail shown", 5, lambda: "tail 100 %" in driver.find_element(By.ID, f"replica-{n}-faults").text)
    # Every call now takes 300 ms or more, so the median rises too: noise alone cannot do that.
    wait_for("B's p50 and p99 at 290 ms or more", P99_RISE, lambda: (
        (number(driver, "p50") or 0) >= 290 and (number(driver, "p99") or 0) >= 290
    ))
    say(f"ok: a 300 ms tail on every replica, set from the page: B's p99 {p99_before} -> "
        f"{number(driver, 'p99')} ms (p50 {number(driver, 'p50')} ms)")

    driver.find_element(By.ID, "replica-3-kill").click()
    state = wait_for("A3 killed and out of rotation", OUT_OF_ROTATION, lambda: (
        replica(driver, 3, "process") == "exited"
        and replica(driver, 3, "state") in ("avoided", "ejected", "unreachable")
        and replica(driver, 3, "state")
    ))
    shown = driver.find_element(By.ID, "replica-3-process").text
    say(f"ok: A3 killed from the page: {shown}, {state}")

    # The list is redrawn twice a second; paused, its ids stay put for the keyboard.
    # Follow a call that reached A (answered 200): one B refused at once (circuit_open,
    # overloaded) has a path of one line, B's, and says nothing of the page's tracing.
    answered = "//ol[@id='logs']/li[contains(., 'status=200')]//button[contains(@class, 'id')]"
    wait_for("a 200 in the log", 10, lambda: driver.find_elements(By.XPATH, answered))
    driver.find_element(By.ID, "logs-pause").click()
    button = wait_for("a 200 in the paused log", 5, lambda: next(iter(
        driver.find_elements(By.XPATH, answered)), None))
    request_id = button.text
    button.send_keys(Keys.ENTER)
    wait_for("the request's path", 5, lambda: (
        driver.find_element(By.ID, "trace").is_displayed()
        and len(driver.find_elements(By.CSS_SELECTOR, "#trace-lines li")) >= 2
    ))
    focused = driver.execute_script("return document.activeElement.id")
    if focused != "trace-title":
        raise Failed(f"after following a request the focus is on {focused!r}, not its path's heading")
    sources = wait_for("the path's lines", 5, lambda: [
        li.find_element(By.CSS_SELECTOR, ".src").text
        for li in driver.find_elements(By.CSS_SELECTOR, "#trace-lines li")
    ])
    say(f"ok: followed {request_id} from the paused log with the keyboard: {len(sources)} lines, "
        f"from {', '.join(sources)}")
    driver.save_screenshot(os.path.join(out, "3-tail-kill-and-trace.png"))
    if docs:
        driver.save_screenshot(docs)
        say(f"ok: screenshot for the README: {docs}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", required=True, help="the lab binary")
    parser.add_argument("--bin-dir", required=True, help="where service-a and service-b are")
    parser.add_argument("--out", required=True, help="directory for the screenshots")
    parser.add_argument("--docs", help="also save the last screenshot here (docs/lab.png)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # The Rust test sends SIGTERM if the script overruns: leave through `finally`, which ends
    # the lab and the browser.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))

    lab = Lab(args.lab, args.bin_dir)
    say(f"ok: the lab is at {lab.url}")
    driver = profile = None
    try:
        driver, profile = browser()
        run(driver, lab, args.out, args.docs)
        status = lab.stop()
        if status != 0:
            raise Failed(f"the lab exited with {status} after SIGTERM")
        say("ok: the lab stopped on SIGTERM, exit 0")
        return 0
    except Exception as e:
        say(f"FAILED: {e}")
        if driver is not None:
            failure = os.path.join(args.out, "failure.png")
            try:
                driver.save_screenshot(failure)
                say(f"screenshot: {failure}\n--- the page's visible text ---")
                say(driver.find_element(By.TAG_NAME, "body").text)
            except Exception as shot:
                say(f"(no screenshot: {shot})")
        return 1
    finally:
        lab.kill()
        if driver is not None:
            driver.quit()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
