"""The web page in a real browser (run by tests/external/web.sh, which starts the servers).

Every scenario does what a person would do (click, type, press keys, find controls by their
label or accessible name) and asserts on what the page shows, then on the API and on DNS
(dig) behind it. Prints PASS/FAIL per scenario; exits 1 when any failed.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

expect.set_options(timeout=5000)

# Loopback only: a proxy from the environment must not see these requests.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Server:
    """One rind-server: its HTTP base URL, DNS port and token."""

    def __init__(self, http, dns=None, token=None):
        self.base = f"http://127.0.0.1:{http}"
        self.dns = dns
        self.token = token

    def api(self, method, path, body=None, headers=None):
        """(status, parsed JSON or None, headers) of one API request."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with OPENER.open(req, timeout=5) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None), resp.headers
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None), e.headers

    def records(self, name):
        status, body, _ = self.api("GET", f"/api/v1/records?name={name}")
        assert status == 200, (status, body)
        return body

    def dig(self, name, rtype="A"):
        """(rcode, answers) for a question asked over UDP."""
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(self.dns), "+time=2", "+tries=1",
             "+noall", "+comments", "+answer", name, rtype],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout
        rcode = re.search(r"status: (\w+)", out)
        answers = [line.split()[-1] for line in out.splitlines()
                   if line and not line.startswith(";") and len(line.split()) >= 5]
        return (rcode.group(1) if rcode else None), answers


def poll(check, seconds=5):
    """Calls check() every 0.1 s until it returns a truthy value, at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.1)


class Run:
    """The browser, the servers, and the PASS/FAIL tally."""

    def __init__(self, args, playwright):
        self.args = args
        self.main = Server(*args.main.split(","))
        self.up = Server(args.up)
        self.guarded = Server(*args.guarded.split(","), token=args.token)
        launch = {"executable_path": args.browser}
        if os.geteuid() == 0:
            # Chromium's sandbox refuses to run as root.
            launch["args"] = ["--no-sandbox"]
        self.browser = playwright.chromium.launch(**launch)
        self.failures = 0
        self.page_errors = []

    def page(self, server, width=1280, height=800):
        """A new tab (own sessionStorage) on `server`'s page; browser errors are collected."""
        context = self.browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.on("pageerror", lambda e: self.page_errors.append(f"page error: {e}"))
        # Chromium also logs every 4xx answer as "Failed to load resource": the page expects
        # those (bad input, 401, 412); script errors and CSP refusals are what count.
        page.on("console", lambda m: m.type == "error"
                and not m.text.startswith("Failed to load resource")
                and self.page_errors.append(f"console error: {m.text}"))
        page.goto(server.base + "/")
        expect(page.get_by_role("heading", name="Records", exact=True)).to_be_visible()
        return page

    def no_page_errors(self):
        assert not self.page_errors, "; ".join(self.page_errors)

    def check(self, name, scenario):
        try:
            scenario()
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 -- every failure is reported, then the next runs
            self.failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)


def record_row(page, text):
    return page.locator("#records-table tbody tr", has_text=text)


def add_via_form(page, name, rtype, data):
    form = page.locator("#add-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Type").select_option(rtype)
    form.get_by_label("Data").fill(data)
    page.get_by_role("button", name="Add", exact=True).click()


def scenarios(run):
    main = run.main
    status, zone, _ = main.api("POST", "/api/v1/zones", {"name": "home.arpa"})
    assert status == 201, (status, zone)
    page = run.page(main)

    def add():
        add_via_form(page, "nas.home.arpa", "A", "192.168.1.10")
        expect(record_row(page, "nas.home.arpa.")).to_contain_text("192.168.1.10")
        expect(page.get_by_role("status")).to_contain_text("Added nas.home.arpa. A 192.168.1.10")
        [record] = main.records("nas.home.arpa")
        assert (record["type"], record["data"], record["ttl"]) == ("A", "192.168.1.10", 300), record
        assert main.dig("nas.home.arpa") == ("NOERROR", ["192.168.1.10"]), main.dig("nas.home.arpa")

    def bad_input():
        body = {"name": "bad.home.arpa", "type": "A", "data": "192.168.1.300", "ttl": 300}
        status, answer, _ = main.api("POST", "/api/v1/records", body)
        assert status == 400, (status, answer)
        add_via_form(page, "bad.home.arpa", "A", "192.168.1.300")
        data = page.locator("#add-form").get_by_label("Data")
        # The API's own words, next to the field they are about.
        expect(page.locator("#add-data-error")).to_have_text(answer["error"])
        expect(data).to_have_attribute("aria-invalid", "true")
        expect(data).to_be_focused()
        ttl = page.locator("#add-form").get_by_label("TTL")
        ttl.fill("forever")
        page.locator("#add-form").get_by_label("Data").fill("192.168.1.30")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#add-ttl-error")).to_contain_text("ttl")
        expect(ttl).to_have_attribute("aria-invalid", "true")
        assert main.records("bad.home.arpa") == [], "a refused record was stored"
        ttl.fill("300")
        page.locator("#add-form").get_by_label("Name").fill("")

    def zones():
        page.get_by_role("button", name="Reload zones").click()
        _, fresh, _ = main.api("GET", "/api/v1/zones/home.arpa")
        row = page.locator("#zones-table tbody tr", has_text="home.arpa.")
        expect(row).to_contain_text(str(fresh["serial"]))
        expect(row.locator("td[data-label=Records]")).to_have_text(str(fresh["records"]))
        assert fresh["serial"] > zone["serial"], "the record did not move the serial"

    def edit():
        page.get_by_role("button", name="Edit nas.home.arpa. A 192.168.1.10").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_label("Data")).to_have_value("192.168.1.10")
        dialog.get_by_label("Data").fill("192.168.1.11")
        dialog.get_by_label("TTL").fill("600")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_have_count(0)
        expect(record_row(page, "nas.home.arpa.")).to_contain_text("192.168.1.11")
        [record] = main.records("nas.home.arpa")
        assert (record["data"], record["ttl"]) == ("192.168.1.11", 600), record
        assert main.dig("nas.home.arpa") == ("NOERROR", ["192.168.1.11"])
        # Focus goes back to where it was.
        expect(page.get_by_role("button", name="Edit nas.home.arpa. A 192.168.1.11")).to_be_focused()

    def edit_conflict():
        page.get_by_role("button", name="Edit nas.home.arpa. A 192.168.1.11").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_label("Data")).to_have_value("192.168.1.11")
        [record] = main.records("nas.home.arpa")
        # Someone else changes the record while the dialog is open.
        other = dict(record, data="192.168.1.12")
        status, _, _ = main.api("PUT", f"/api/v1/records/{record['id']}", other)
        assert status == 200, status
        dialog.get_by_label("Data").fill("192.168.1.13")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog.get_by_role("alert")).to_contain_text("changed by someone else")
        expect(dialog.get_by_label("Data")).to_have_value("192.168.1.12")
        [kept] = main.records("nas.home.arpa")
        assert kept["data"] == "192.168.1.12", f"the page overwrote another's change: {kept}"
        dialog.get_by_label("Data").fill("192.168.1.13")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_have_count(0)
        [saved] = main.records("nas.home.arpa")
        assert saved["data"] == "192.168.1.13", saved

    def delete():
        add_via_form(page, "keep.home.arpa", "TXT", '"stays"')
        expect(record_row(page, "keep.home.arpa.")).to_be_visible()
        page.get_by_role("button", name="Delete nas.home.arpa. A 192.168.1.13").click()
        dialog = page.get_by_role("alertdialog")
        expect(dialog).to_contain_text("nas.home.arpa. A 192.168.1.13")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        assert len(main.records("nas.home.arpa")) == 1, "Cancel deleted the record"
        page.get_by_role("button", name="Delete nas.home.arpa. A 192.168.1.13").click()
        dialog.get_by_role("button", name="Delete", exact=True).click()
        expect(dialog).to_have_count(0)
        expect(record_row(page, "nas.home.arpa.")).to_have_count(0)
        expect(record_row(page, "keep.home.arpa.")).to_be_visible()
        assert main.records("nas.home.arpa") == []
        assert main.dig("nas.home.arpa")[0] == "NXDOMAIN", main.dig("nas.home.arpa")

    def search():
        add_via_form(page, "printer.home.arpa", "A", "192.168.1.40")
        expect(record_row(page, "printer.home.arpa.")).to_be_visible()
        page.get_by_label("Search").fill("print")
        expect(page.locator("#records-table tbody tr")).to_have_count(1)
        page.get_by_label("Search").fill("")
        page.get_by_label("Show only").select_option("TXT")
        expect(page.locator("#records-table tbody tr")).to_have_count(1)
        expect(record_row(page, "keep.home.arpa.")).to_be_visible()
        page.get_by_label("Show only").select_option("")

    def cache_and_log():
        # www.example.test is a local record of "up"; main forwards the question and caches it.
        status, _, _ = run.up.api("POST", "/api/v1/records",
                                  {"name": "www.example.test", "type": "A", "data": "192.0.2.7"})
        assert status == 201, status
        assert main.dig("www.example.test") == ("NOERROR", ["192.0.2.7"])
        page.get_by_role("button", name="Show cache").click()
        expect(page.locator("#cache-table tbody tr", has_text="www.example.test.")).to_be_visible()
        page.get_by_role("button", name="Show queries").click()
        row = page.locator("#log-table tbody tr", has_text="www.example.test.").first
        expect(row).to_contain_text("127.0.0.1")
        expect(row).to_contain_text("upstream")
        page.get_by_role("button", name="Flush cache").click()
        expect(page.get_by_role("status")).to_contain_text("Flushed the whole cache")
        expect(page.locator("#cache-table tbody tr")).to_have_count(0)
        expect(page.locator("#cache-summary")).to_have_text("Nothing cached.")
        _, cached, _ = main.api("GET", "/api/v1/cache")
        assert cached == [], cached

    def status_panel():
        page.get_by_role("button", name="Reload status").click()
        _, fresh, _ = main.api("GET", "/api/v1/status")
        facts = page.locator("#status-list")
        expect(facts).to_contain_text(fresh["version"])
        expect(facts.locator("div", has_text="Local records")).to_contain_text(
            str(fresh["store"]["records"]))
        expect(page.locator("#upstreams-table tbody tr")).to_contain_text("127.0.0.1:")

    def escaping():
        # Record data is user input: markup in it must show as text, never run or render.
        data = '"<img src=x onerror=alert(1)><b>bold</b>"'
        add_via_form(page, "xss.home.arpa", "TXT", data)
        row = record_row(page, "xss.home.arpa.")
        expect(row).to_contain_text("<img src=x onerror=alert(1)><b>bold</b>")
        expect(row.locator("img, b")).to_have_count(0)

    for name, scenario in [
        ("add a record with the form: listed, in the API, answered by dig", add),
        ("bad input: the API's message next to the field, nothing stored", bad_input),
        ("zones panel: the zone with the API's serial and record count", zones),
        ("edit a record in the dialog: listed, in the API, answered by dig", edit),
        ("edit after someone else's change: 412 said in words, nothing overwritten", edit_conflict),
        ("delete asks first; Cancel keeps, Delete removes (API and NXDOMAIN)", delete),
        ("search and type filter", search),
        ("cache list and flush, query log shows a dig query", cache_and_log),
        ("status panel matches /api/v1/status", status_panel),
        ("record data with markup is shown as text", escaping),
    ]:
        run.check(name, scenario)
    showcase(run)
    page.reload()
    expect(record_row(page, "router.home.arpa.")).to_be_visible()
    expect(page.locator("#log-table tbody tr").first).to_be_visible()
    page.screenshot(path=os.path.join(run.args.work, "web-desktop.png"), full_page=True)
    page.context.close()


def showcase(run):
    """Replaces the test records with a small home network, for the README's screenshots."""
    main = run.main
    _, left, _ = main.api("GET", "/api/v1/records")
    for record in left:
        status, _, _ = main.api("DELETE", f"/api/v1/records/{record['id']}")
        assert status == 204, status
    for name, rtype, data in [
        ("router.home.arpa", "A", "192.168.1.1"),
        ("nas.home.arpa", "A", "192.168.1.10"),
        ("nas.home.arpa", "AAAA", "fd00::10"),
        ("printer.home.arpa", "A", "192.168.1.40"),
        ("files.home.arpa", "CNAME", "nas.home.arpa."),
        ("home.arpa", "MX", "10 nas.home.arpa."),
        ("home.arpa", "TXT", '"v=spf1 mx -all"'),
    ]:
        status, answer, _ = main.api("POST", "/api/v1/records",
                                     {"name": name, "type": rtype, "data": data})
        assert status == 201, (status, answer)
    status, answer, _ = main.api("POST", "/api/v1/blocklists", {
        "name": "mine",
        "domains": ["ads.example.com", "||tracker.example.net^", "telemetry.example.org"],
    })
    assert status == 201, (status, answer)
    for name in ["nas.home.arpa", "files.home.arpa", "www.example.test", "ads.example.com"]:
        main.dig(name)


def list_row(page, name):
    return page.locator("#lists-table tbody tr").filter(
        has=page.locator("td[data-label=Name]", has_text=re.compile(f"^{re.escape(name)}$")))


def serve_list(run, path, text, ahead=0):
    """Writes a list file for the list server; `ahead` seconds moves its mtime on, so a
    refresh within the same second is not answered 304 Not Modified."""
    file = os.path.join(run.args.work, "lists", path)
    with open(file, "w", encoding="utf-8") as out:
        out.write(text)
    stamp = time.time() + ahead
    os.utime(file, (stamp, stamp))
    return f"http://127.0.0.1:{run.args.lists}/{path}"


def blocking(run):
    main, up = run.main, run.up
    # Names "up" answers, so main forwards them when they are not blocked.
    for name, data in [("ads.example.test", "192.0.2.20"), ("served.example.test", "192.0.2.21")]:
        status, _, _ = up.api("POST", "/api/v1/records", {"name": name, "type": "A", "data": data})
        assert status == 201, status
    assert main.dig("ads.example.test") == ("NOERROR", ["192.0.2.20"])
    page = run.page(main)
    expect(list_row(page, "mine")).to_contain_text("inline")

    # An inline list: counted, listed, and answered 0.0.0.0.
    form = page.locator("#inline-form")
    form.get_by_label("List name").fill("test-inline")
    form.get_by_label("Domains, one a line").fill(
        "ads.example.test\n||tracker.example.test^\n\nnot_a_name!\n")
    page.get_by_role("button", name="Add inline list").click()
    row = list_row(page, "test-inline")
    expect(row.locator("td[data-label=URL]")).to_have_text("inline")
    expect(row.locator("td[data-label=Domains]")).to_have_text("2")
    expect(row.locator("td[data-label='Skipped lines']")).to_have_text("1")
    expect(row.locator("td[data-label='Last error']")).to_have_text("none")
    expect(row.get_by_role("button", name="Refresh list test-inline")).to_have_count(0)
    expect(page.get_by_role("status")).to_contain_text("Added test-inline: 2 domains")
    expect(form.get_by_label("List name")).to_have_value("")
    [made] = [l for l in main.api("GET", "/api/v1/blocklists")[1] if l["name"] == "test-inline"]
    assert (made["url"], made["domains"], made["skipped"]) == (None, 2, 1), made
    assert main.dig("ads.example.test") == ("NOERROR", ["0.0.0.0"]), main.dig("ads.example.test")
    assert main.dig("a.tracker.example.test") == ("NOERROR", ["0.0.0.0"])

    # The query log says so in words.
    page.locator("#log-form").get_by_label("Domain").fill("ads.example.test")
    page.get_by_role("button", name="Show queries").click()
    source = page.locator("#log-table tbody tr").first.locator("td[data-label=Source]")
    expect(source).to_have_text("blocked")
    expect(source).to_have_class(re.compile(r"\bblocked\b"))

    # The allowlist unblocks a name, and taking it off blocks it again.
    allow = page.locator("#allow-form")
    allow.get_by_label("Domain to allow").fill("ads.example.test")
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page.locator("#allow-table tbody tr", has_text="ads.example.test")).to_be_visible()
    assert main.api("GET", "/api/v1/allowlist")[1] == [{"domain": "ads.example.test"}]
    assert main.dig("ads.example.test") == ("NOERROR", ["192.0.2.20"]), main.dig("ads.example.test")
    # Twice is a conflict, said next to the field.
    allow.get_by_label("Domain to allow").fill("ads.example.test")
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page.locator("#allow-domain-error")).to_contain_text("ads.example.test")
    expect(allow.get_by_label("Domain to allow")).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Remove ads.example.test from the allowlist").click()
    expect(page.locator("#allow-table tbody tr")).to_have_count(0)
    expect(page.locator("#allow-summary")).to_have_text("Nothing on the allowlist.")
    assert main.api("GET", "/api/v1/allowlist")[1] == []
    assert main.dig("ads.example.test") == ("NOERROR", ["0.0.0.0"])

    # Bad input: the API's words next to the field, nothing added.
    status, answer, _ = main.api("POST", "/api/v1/blocklists", {"url": "ftp://x"})
    assert status == 400, (status, answer)
    fetch = page.locator("#fetch-form")
    fetch.get_by_label("URL").fill("ftp://x")
    page.get_by_role("button", name="Add list", exact=True).click()
    expect(page.locator("#fetch-url-error")).to_have_text(answer["error"])
    expect(page.locator("#fetch-form-error")).to_contain_text("Not added")
    expect(fetch.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    expect(fetch.get_by_label("URL")).to_be_focused()
    form.get_by_label("List name").fill("")
    form.get_by_label("Domains, one a line").fill("ads.example.test")
    page.get_by_role("button", name="Add inline list").click()
    expect(page.locator("#inline-name-error")).to_contain_text("name")
    expect(form.get_by_label("List name")).to_be_focused()
    names = [l["name"] for l in main.api("GET", "/api/v1/blocklists")[1]]
    assert names == ["mine", "test-inline"], names
    form.get_by_label("Domains, one a line").fill("")

    # A list by URL from the list server; refreshed after it changed, then from a server
    # that has lost it (the copy kept stays in use, the reason shown).
    url = serve_list(run, "hosts.txt", "0.0.0.0 served.example.test\n")
    fetch.get_by_label("URL").fill(url)
    fetch.get_by_label("List name (optional)").fill("served")
    page.get_by_role("button", name="Add list", exact=True).click()
    row = list_row(page, "served")
    expect(row.locator("td[data-label=URL]")).to_have_text(url)
    expect(row.locator("td[data-label=Domains]")).to_have_text("1")
    expect(page.locator("#fetch-url-error")).to_have_text("")
    expect(fetch.get_by_label("URL")).not_to_have_attribute("aria-invalid", "true")
    assert main.dig("served.example.test") == ("NOERROR", ["0.0.0.0"])
    serve_list(run, "hosts.txt", "0.0.0.0 served.example.test\n0.0.0.0 more.example.test\n",
               ahead=60)
    row.get_by_role("button", name="Refresh list served").click()
    expect(row.locator("td[data-label=Domains]")).to_have_text("2")
    expect(page.get_by_role("status")).to_contain_text("Refreshed served: 2 domains")
    expect(row.get_by_role("button", name="Refresh list served")).to_be_focused()
    assert main.dig("more.example.test") == ("NOERROR", ["0.0.0.0"])
    os.remove(os.path.join(run.args.work, "lists", "hosts.txt"))
    row.get_by_role("button", name="Refresh list served").click()
    expect(page.locator("#lists-error")).to_contain_text("Not refreshed")
    expect(page.locator("#lists-error")).to_contain_text("404")
    expect(row.locator("td[data-label='Last error']")).to_contain_text("404")
    expect(row.locator("td[data-label=Domains]")).to_have_text("2")
    assert main.dig("more.example.test") == ("NOERROR", ["0.0.0.0"])

    # Remove asks first; Cancel keeps, Remove removes.
    page.get_by_role("button", name="Remove list served").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("served (2 domains) stops blocking")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("button", name="Remove list served")).to_be_focused()
    assert any(l["name"] == "served" for l in main.api("GET", "/api/v1/blocklists")[1])
    page.get_by_role("button", name="Remove list served").click()
    dialog.get_by_role("button", name="Remove", exact=True).click()
    expect(dialog).to_have_count(0)
    expect(list_row(page, "served")).to_have_count(0)
    expect(list_row(page, "test-inline")).to_be_visible()
    assert all(l["name"] != "served" for l in main.api("GET", "/api/v1/blocklists")[1])
    assert main.dig("served.example.test") == ("NOERROR", ["192.0.2.21"])
    page.context.close()


def blocking_phone(run):
    page = run.page(run.main, width=360, height=740)
    wide = lambda: page.evaluate(  # noqa: E731
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    url = serve_list(run, "a-rather-long-path-for-a-list-on-a-phone-" * 3 + ".txt",
                     "||phone.example.test^\n")
    page.locator("#fetch-form").get_by_label("URL").fill(url)
    page.get_by_role("button", name="Add list", exact=True).click()
    row = list_row(page, url)
    expect(row.locator("td[data-label=Domains]")).to_have_text("1")
    page.locator("#allow-form").get_by_label("Domain to allow").fill(
        "a-rather-long-name-to-allow-on-a-phone.example.test")
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page.locator("#allow-table tbody tr")).to_have_count(1)
    page.locator("#blocking").evaluate("e => e.scrollIntoView()")
    assert wide() <= 0, f"the blocking panel scrolls sideways by {wide()} px at 360 px"
    for control in [page.get_by_role("button", name="Add inline list"),
                    page.get_by_label("Domains, one a line"),
                    row.get_by_role("button", name="Refresh list")]:
        box = control.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, f"off screen: {box}"
    page.locator("#blocking").screenshot(path=os.path.join(run.args.work, "blocking-phone.png"))
    row.get_by_role("button", name="Remove list").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, f"dialog off screen: {box}"
    assert wide() <= 0, f"the remove dialog scrolls sideways by {wide()} px"
    dialog.get_by_role("button", name="Remove", exact=True).click()
    expect(row).to_have_count(0)
    page.get_by_role("button", name="Remove a-rather-long-name-to-allow").click()
    expect(page.locator("#allow-table tbody tr")).to_have_count(0)
    page.context.close()


def phone(run):
    page = run.page(run.main, width=360, height=740)
    wide = lambda: page.evaluate(  # noqa: E731
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    long = '"' + "a-long-txt-value-without-spaces-" * 6 + '"'
    add_via_form(page, "a-rather-long-name-for-a-phone.home.arpa", "TXT", long)
    expect(record_row(page, "a-rather-long-name-for-a-phone.home.arpa.")).to_be_visible()
    page.locator("#log-form").get_by_role("button", name="Show queries").click()
    assert wide() <= 0, f"the page scrolls sideways by {wide()} px at 360 px"
    page.get_by_role("button", name="Edit a-rather-long-name").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name")).to_be_visible()
    box = dialog.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, f"dialog off screen: {box}"
    assert wide() <= 0, f"the edit dialog scrolls sideways by {wide()} px"
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    [long_record] = run.main.records("a-rather-long-name-for-a-phone.home.arpa")
    run.main.api("DELETE", f"/api/v1/records/{long_record['id']}")
    page.reload()
    expect(record_row(page, "router.home.arpa.")).to_be_visible()
    page.locator("#search-form").evaluate("e => e.scrollIntoView()")
    page.screenshot(path=os.path.join(run.args.work, "web-phone.png"), full_page=False)
    page.context.close()


def focus_shows(page):
    """True when the focused element draws a visible focus ring."""
    return page.evaluate("""() => {
        const s = getComputedStyle(document.activeElement);
        return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    }""")


def tab_to(page, predicate, limit=60):
    """Presses Tab until the focused element matches the JS predicate (bounded)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const e = document.activeElement; return !!({predicate}); }}"):
            assert focus_shows(page), "the focused control shows no focus ring"
            return
    raise AssertionError(f"{predicate} not reached with {limit} Tabs")


def keyboard(run):
    main = run.main
    page = run.page(main)
    tab_to(page, "e.id === 'add-name'")
    page.keyboard.type("kb.home.arpa")
    page.keyboard.press("Tab")  # Type
    page.keyboard.press("Tab")  # TTL
    page.keyboard.press("Tab")  # Data
    page.keyboard.type("192.168.1.50")
    page.keyboard.press("Enter")
    expect(record_row(page, "kb.home.arpa.")).to_contain_text("192.168.1.50")
    assert [r["data"] for r in main.records("kb.home.arpa")] == ["192.168.1.50"]

    tab_to(page, "(e.getAttribute('aria-label') || '').startsWith('Edit kb.home.arpa.')")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Name")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(dialog.get_by_label("Data")).to_be_focused()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("192.168.1.51")
    page.keyboard.press("Enter")
    expect(dialog).to_have_count(0)
    expect(record_row(page, "kb.home.arpa.")).to_contain_text("192.168.1.51")
    assert main.dig("kb.home.arpa") == ("NOERROR", ["192.168.1.51"])

    tab_to(page, "(e.getAttribute('aria-label') || '').startsWith('Delete kb.home.arpa.')")
    page.keyboard.press("Enter")
    confirm = page.get_by_role("alertdialog")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(page.get_by_role("button", name="Delete kb.home.arpa.")).to_be_focused()
    page.keyboard.press("Enter")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(confirm.get_by_role("button", name="Delete", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(record_row(page, "kb.home.arpa.")).to_have_count(0)
    assert main.records("kb.home.arpa") == []
    page.context.close()


def keyboard_blocking(run):
    main = run.main
    page = run.page(main)
    tab_to(page, "e.getAttribute('href') === '#blocking'")
    page.keyboard.press("Enter")
    tab_to(page, "e.id === 'inline-name'", limit=10)
    # Enter with no name: the API's words next to the name, focus on it.
    page.keyboard.press("Enter")
    name = page.locator("#inline-form").get_by_label("List name")
    expect(page.locator("#inline-name-error")).to_contain_text("name")
    expect(name).to_be_focused()
    page.keyboard.type("kb-list")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Domains, one a line")).to_be_focused()
    page.keyboard.type("kb.example.test")
    page.keyboard.press("Enter")  # a new line in the text area, not a submit
    page.keyboard.type("||kb2.example.test^")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Add inline list")).to_be_focused()
    assert focus_shows(page), "the focused button shows no focus ring"
    page.keyboard.press("Enter")
    row = list_row(page, "kb-list")
    expect(row.locator("td[data-label=Domains]")).to_have_text("2")
    expect(name).to_be_focused()
    expect(page.locator("#inline-name-error")).to_have_text("")
    assert main.dig("kb.example.test") == ("NOERROR", ["0.0.0.0"])
    assert main.dig("x.kb2.example.test") == ("NOERROR", ["0.0.0.0"])

    tab_to(page, "(e.getAttribute('aria-label') || '') === 'Remove list kb-list'")
    page.keyboard.press("Enter")
    confirm = page.get_by_role("alertdialog")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(confirm.get_by_role("button", name="Remove", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(row).to_have_count(0)
    assert all(l["name"] != "kb-list" for l in main.api("GET", "/api/v1/blocklists")[1])
    page.context.close()


def token_prompt(run):
    guarded = run.guarded
    status, _, _ = guarded.api("POST", "/api/v1/records",
                               {"name": "secret.home.arpa", "type": "A", "data": "10.0.0.9"})
    assert status == 201, status
    page = run.page(guarded)
    prompt = page.get_by_label("API token")
    expect(prompt).to_be_visible()
    expect(prompt).to_be_focused()
    expect(page.locator("#records-summary")).to_contain_text("Needs the API token")
    expect(record_row(page, "secret.home.arpa.")).to_have_count(0)
    prompt.fill("not-the-token")
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-reason")).to_contain_text("wrong API token")
    page.get_by_label("API token").fill(run.args.token)
    page.keyboard.press("Enter")
    expect(record_row(page, "secret.home.arpa.")).to_contain_text("10.0.0.9")
    expect(page.get_by_label("API token")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('rind.api-token')") == run.args.token
    assert page.evaluate("localStorage.length") == 0, "the token must stay in the tab"
    add_via_form(page, "added.home.arpa", "A", "10.0.0.10")
    expect(record_row(page, "added.home.arpa.")).to_be_visible()
    assert [r["data"] for r in guarded.records("added.home.arpa")] == ["10.0.0.10"]
    page.context.close()
    # A new tab (new session) asks again.
    fresh = run.page(guarded)
    expect(fresh.get_by_label("API token")).to_be_visible()
    fresh.context.close()


def pages(run):
    """More records than one page (1000) of the list: the page follows Link: rel="next"."""
    guarded = run.guarded
    _, before, _ = guarded.api("GET", "/api/v1/records")
    for i in range(1001):
        status, answer, _ = guarded.api("POST", "/api/v1/records",
                                        {"name": f"host{i}.bulk.home.arpa", "type": "A",
                                         "data": f"10.1.{i // 256}.{i % 256}"})
        assert status == 201, (status, answer)
    total = len(before) + 1001
    page = run.page(guarded)
    page.get_by_label("API token").fill(run.args.token)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#records-summary")).to_have_text(f"{total} records.", timeout=15000)
    # The newest record is on the second page.
    page.get_by_label("Search").fill("host1000.bulk")
    expect(record_row(page, "host1000.bulk.home.arpa.")).to_contain_text("10.1.3.232")
    page.context.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--browser", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--up", required=True, help="HTTP port of the upstream rind")
    parser.add_argument("--main", required=True, help="HTTP,DNS ports of the rind under test")
    parser.add_argument("--guarded", required=True, help="HTTP,DNS ports of the rind with a token")
    parser.add_argument("--lists", required=True, help="port of the blocklists' web server")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        run = Run(args, playwright)
        run.check("the page and its panels", lambda: scenarios(run))
        run.check("360 px wide: no sideways scroll, dialog fits", lambda: phone(run))
        run.check("keyboard alone: add, edit, cancel and delete", lambda: keyboard(run))
        run.check("blocking: inline list answered 0.0.0.0, allowlist, bad input, list by URL,"
                  " refresh (also failed), remove after a confirmation", lambda: blocking(run))
        run.check("blocking at 360 px wide: no sideways scroll, dialog fits",
                  lambda: blocking_phone(run))
        run.check("keyboard alone: add an inline list (and its error), remove it",
                  lambda: keyboard_blocking(run))
        run.check("token prompt: asked, wrong token said, kept for the tab only",
                  lambda: token_prompt(run))
        run.check("over a thousand records: every page of the list is shown",
                  lambda: pages(run))
        run.check("no script errors or CSP violations in the browser", run.no_page_errors)
        run.browser.close()
    sys.exit(1 if run.failures else 0)


if __name__ == "__main__":
    main()
