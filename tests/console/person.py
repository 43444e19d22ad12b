"""A person's path through the web console, in one headless Chromium session (Playwright,
the system's /usr/bin/chromium). Run by tests/console.rs against two real servers: one open,
one with --credentials. Every wait is for something on the page; each step leaves a
screenshot in $SCREENSHOTS. Prints `first-paint-ms N` lines for the README's figure."""

import json
import os
import re
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

CONSOLE = os.environ["CONSOLE"]
SIGNED_CONSOLE = os.environ["SIGNED_CONSOLE"]
GATEWAY = os.environ["GATEWAY"]
HELLO = os.environ["HELLO_WASM"]
EXIT = os.environ["EXIT_WASM"]
SHOTS = os.environ["SCREENSHOTS"]
KEY, SECRET = os.environ["ACCESS_KEY"], os.environ["SECRET_KEY"]
# Generous: CI has two cores shared with the server, its tasks and the browser.
WAIT_MS = 120_000

os.makedirs(SHOTS, exist_ok=True)
steps = 0
started = time.monotonic()


def shot(page, name):
    global steps
    steps += 1
    page.screenshot(path=os.path.join(SHOTS, f"{steps:02}-{name}.png"), full_page=True)
    # Elapsed seconds, to see which step a slow run spent its time on (never asserted).
    print("step", steps, name, f"at {time.monotonic() - started:.1f} s", flush=True)


def first_paint(page, name):
    """The page's first contentful paint, as the browser measured it."""
    ms = page.evaluate(
        "() => new Promise((done) => { const seen = performance.getEntriesByName('first-contentful-paint');"
        " if (seen.length) return done(seen[0].startTime);"
        " new PerformanceObserver((l) => done(l.getEntries()[0].startTime)).observe({type: 'paint', buffered: true}); })")
    print(f"first-paint-ms {name} {ms:.1f}", flush=True)


def editor_register(page, document):
    page.fill("#taskdef-editor", json.dumps(document, indent=2))
    page.click("button:has-text('Register')")


def gateway_get(path):
    try:
        with urllib.request.urlopen(f"http://{GATEWAY}{path}", timeout=60) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def service_rows_running(page):
    return page.locator("#tasks tbody tr", has=page.locator(".badge", has_text=re.compile("^RUNNING$")))


with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.on("pageerror", lambda error: print("page error:", error, flush=True))

    # An empty server: the services page says what to do first.
    page.goto(CONSOLE)
    expect(page.locator("main")).to_contain_text("register a task definition")
    first_paint(page, "services")
    shot(page, "services-empty")

    # A task definition with a mistake: the API's error names the field.
    page.click("text=register a task definition")
    expect(page.locator("#taskdef-editor")).to_have_value(re.compile("containerDefinitions"))
    web = {
        "family": "web",
        "memory": "64",
        "containerDefinitions": [{
            "name": "web", "image": HELLO, "essential": True,
            "dockerLabels": {"wasmgate.http.path": "/hello"},
        }],
    }
    mistaken = json.loads(json.dumps(web))
    mistaken["containerDefinitions"][0]["memoryReservation"] = "plenty"
    editor_register(page, mistaken)
    expect(page.locator("#taskdef-errors .path")).to_have_text("containerDefinitions[0].memoryReservation")
    shot(page, "taskdef-field-error")
    editor_register(page, web)
    expect(page.locator("main h1")).to_have_text("Task definition web")
    expect(page.locator("#revision")).to_contain_text("web:1")
    shot(page, "taskdef-registered")

    # A service of it, which reaches a steady state.
    page.click("nav >> text=Services")
    page.fill("input[name=serviceName]", "web")
    expect(page.locator("select[name=taskDefinition]")).to_contain_text("web")
    page.select_option("select[name=taskDefinition]", "web")
    page.click("button:has-text('Create service')")
    expect(page.locator("main h1")).to_contain_text("Service web")
    expect(page.locator("#running-count")).to_have_text("1")
    expect(page.locator("#events")).to_contain_text("(service web) has reached a steady state.")
    shot(page, "service-steady")

    # Scaled to 3.
    page.fill("input[name=desiredCount]", "3")
    page.click("button:has-text('Scale')")
    expect(page.locator("#desired-count")).to_have_text("3")
    expect(page.locator("#running-count")).to_have_text("3")
    expect(service_rows_running(page)).to_have_count(3)
    shot(page, "service-scaled")

    # One task stopped from its page, and replaced.
    first = page.locator("#tasks tbody tr a").first
    stopped_id = first.inner_text()
    first.click()
    expect(page.locator("#task-status")).to_have_text("RUNNING")
    page.click("button:has-text('Stop task')")
    expect(page.locator("#task-status")).to_have_text("STOPPED")
    expect(page.locator("#stopped-reason")).to_have_text("Stopped from the console")
    expect(page.locator("#task-logs")).to_contain_text("this is all of its output")
    shot(page, "task-stopped")
    page.click("main dl >> a[href*='/services/web']")
    expect(service_rows_running(page)).to_have_count(3)
    expect(page.locator("#tasks")).not_to_contain_text(stopped_id)
    shot(page, "service-replaced")

    # A running task's live logs and charts: requests that panic write to its stderr while
    # the page is open (equally idle tasks take turns, so six requests reach each of three).
    page.locator("#tasks tbody tr a").first.click()
    expect(page.locator("#task-status")).to_have_text("RUNNING")
    expect(page.locator("#task-logs")).to_contain_text("Following the output live")
    for _ in range(6):
        assert gateway_get("/hello/trap") == 500
    for _ in range(20):
        assert gateway_get("/hello") == 200
    expect(page.locator("#logs")).to_contain_text("asked to trap")
    expect(page.locator("figure.chart.memory figcaption")).not_to_contain_text("no report yet")
    shot(page, "task-live")

    # The HTTP routes page: the requests and the errors, per service.
    page.click("nav >> text=HTTP routes")
    row = page.locator("main tbody tr", has_text="web")
    expect(row).to_contain_text("/hello")
    expect(row.locator(".totals")).to_contain_text(re.compile(r", [1-9]\d*\)$"))
    expect(row.locator(".rps")).not_to_have_text("…")
    # Requests while the page watches: the rate between two readings.
    for _ in range(40):
        assert gateway_get("/hello") == 200
    expect(row.locator(".rps")).not_to_have_text(re.compile(r"^(…|0\.0)$"))
    shot(page, "routes")

    # A service that crash-loops, with the circuit breaker on: its events say so.
    page.goto(CONSOLE + "#/taskdefs/new")
    editor_register(page, {
        "family": "crash", "memory": "16",
        "containerDefinitions": [{"name": "main", "image": EXIT, "command": ["3"], "essential": True}],
    })
    expect(page.locator("#revision")).to_contain_text("crash:1")
    page.click("nav >> text=Services")
    page.fill("input[name=serviceName]", "crash")
    expect(page.locator("select[name=taskDefinition]")).to_contain_text("crash")
    page.select_option("select[name=taskDefinition]", "crash")
    page.check("input[name=circuitBreaker]")
    page.fill("input[name=desiredCount]", "1")
    page.click("button:has-text('Create service')")
    expect(page.locator("main h1")).to_contain_text("Service crash")
    # (Whether the circuit breaker also fails the deployment is a race: a Wasm task is RUNNING
    # from instantiation, so the deployment may complete before the first task exits.)
    expect(page.locator("#events")).to_contain_text("is unable to consistently start tasks successfully")
    expect(page.locator("#timeline")).to_contain_text("circuit breaker:")
    shot(page, "service-crash-loop")
    page.click("nav >> text=Services")
    # (Its last event is the circuit breaker's or the throttle's, whichever came last.)
    expect(page.locator("main tbody tr", has_text="crash")).to_contain_text("crash:1")
    expect(page.locator("main tbody tr", has_text="web")).to_contain_text("COMPLETED")
    shot(page, "services")
    page.click("main tbody >> text=crash")
    page.click("button:has-text('Delete service')")
    page.click("button:has-text('Really delete')")
    expect(page.locator("main h1")).to_have_text("Services in default")
    expect(page.locator("main tbody tr", has_text="crash")).to_have_count(0)
    page.click("nav >> text=Tasks")
    expect(page.locator("#stopped")).to_contain_text("Essential container in task exited")
    shot(page, "tasks-stopped")

    # One task of a definition, run from its page: it ends, with its container's exit code.
    page.goto(CONSOLE + "#/taskdefs/crash")
    page.click("button:has-text('Run a task of it')")
    expect(page.locator("main h1")).to_contain_text("Task ")
    expect(page.locator("#task-status")).to_have_text("STOPPED")
    expect(page.locator("#containers tbody tr")).to_contain_text("3")
    expect(page.locator("#logs")).to_contain_text("exiting with 3")
    shot(page, "task-exit-code")
    page.click("nav >> text=Instances")
    expect(page.locator("main tbody")).to_contain_text("CONNECTED")
    shot(page, "instances")
    page.click("nav >> text=Clusters")
    expect(page.locator("main tbody")).to_contain_text("default")
    shot(page, "clusters")
    context.close()

    # With --credentials: a login page; a wrong secret refused in the API's words; the right
    # one signs every call. A fresh context: nothing held from before.
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(SIGNED_CONSOLE)
    expect(page.locator("#login")).to_be_visible()
    first_paint(page, "login")
    # Unsigned, the data is refused; only the console's own files load.
    refused = page.evaluate(
        "async () => { const r = await fetch('/', {method: 'POST', headers: {'content-type':"
        " 'application/x-amz-json-1.1', 'x-amz-target': 'AmazonEC2ContainerServiceV20141113.ListClusters'},"
        " body: '{}'}); const g = await fetch('/v1/tasks'); return [r.status, (await r.json()).__type, g.status]; }")
    assert refused[0] == 400 and refused[1] == "UnrecognizedClientException" and refused[2] >= 400, refused
    page.fill("input[name=accessKeyId]", KEY)
    page.fill("input[name=secretAccessKey]", SECRET + "-wrong")
    page.click("button:has-text('Sign in')")
    expect(page.locator("#login-error")).to_contain_text("InvalidSignatureException")
    expect(page.locator("#login-error")).to_contain_text("signature we calculated does not match")
    shot(page, "login-refused")
    page.fill("input[name=secretAccessKey]", SECRET)
    page.click("button:has-text('Sign in')")
    expect(page.locator("#who")).to_contain_text(f"signed as {KEY}")
    expect(page.locator("main")).to_contain_text("register a task definition")
    page.click("nav >> text=Clusters")
    expect(page.locator("main tbody")).to_contain_text("default")
    shot(page, "signed-in")
    browser.close()
print("the person's path passed", flush=True)
