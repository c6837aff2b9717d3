"""Open a run's explorable page (`sim run ... --html FILE`) in headless Chromium through
Playwright and check it as a reader would use it: it loads without a console error, shows the
finding and the fault named as its cause, a filter by client and one by node take effect (and
are kept in the address), zooming out shows the whole run, and a click on an operation shows
its trace line and links to log lines. A screenshot is kept.

Usage: check_page.py PAGE --chromium /usr/bin/chromium --screenshot OUT.png
                     [--finding TEXT] [--fault KIND]
Exit 0 when every check holds; otherwise the failed check is printed (exit 1).
"""

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("page")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--finding", help="text the finding must contain")
    ap.add_argument("--fault", help="a fault kind the chain must name")
    args = ap.parse_args()
    page_path = Path(args.page).resolve()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            # No network: every request but the page itself is refused, and would be an error.
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            context.route("**/*", lambda route: route.continue_()
                          if route.request.url.startswith("file://") else route.abort())
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)

            # The finding, and the chain naming its fault.
            check(page.is_visible("#finding"), "the finding is not shown")
            finding = page.inner_text("#finding")
            if args.finding:
                check(args.finding in finding, f"the finding does not say {args.finding!r}: {finding}")
            if args.fault:
                check(f"likely cause: {args.fault}" in finding,
                      f"the chain does not name {args.fault} as the cause: {finding}")
            check(page.locator("#finding-line, #finding-band").count() >= 1,
                  "the finding is not marked on the timeline")
            check("failure" in page.inner_text("#outcome"), "the outcome badge is not a failure")

            # The whole run, then a filter by client.
            page.click("#fit")
            page.wait_for_timeout(200)
            check(float(page.input_value("#from")) == 0.0, "the whole run does not start at 0")
            ops = page.locator("#timeline rect[data-op]").count()
            check(ops > 0, "no operation is drawn")
            clients = page.locator("#f-clients input")
            first = clients.first.get_attribute("data-value")
            drawn_of = lambda c: page.locator(f"#timeline rect[data-client='{c}']").count()
            check(drawn_of(first) > 0, f"no operation of {first} is drawn")
            clients.first.uncheck()
            page.wait_for_timeout(200)
            check(drawn_of(first) == 0, f"{first}'s operations are still drawn once filtered out")
            check(page.locator("#timeline rect[data-op]").count() < ops,
                  "filtering a client out drew as many operations")
            check("clients=" in page.evaluate("location.hash"),
                  "the filter is not kept in the address")
            clients.first.check()
            page.wait_for_timeout(200)
            check(page.locator("#timeline rect[data-op]").count() == ops,
                  "the client's operations did not come back")

            # A filter by node.
            nodes = page.locator("#f-nodes input")
            node = nodes.first.get_attribute("data-value")
            check(page.locator(f"#timeline text[data-lane='{node}']").count() == 1,
                  f"{node} has no lane")
            nodes.first.uncheck()
            page.wait_for_timeout(200)
            check(page.locator(f"#timeline text[data-lane='{node}']").count() == 0,
                  f"{node}'s lane is still drawn once filtered out")
            nodes.first.check()
            page.wait_for_timeout(200)

            # Requests to brokers, and messages between nodes (a cluster's), drawn on demand.
            page.check("#requests")
            page.wait_for_timeout(200)
            check(page.locator("#timeline [data-kind='request']").count() > 0,
                  "no request drawn once asked for")
            page.uncheck("#requests")
            if not page.is_disabled("#messages"):
                page.check("#messages")
                page.wait_for_timeout(200)
                check(page.locator("#timeline [data-kind='message']").count() > 0,
                      "no message between nodes drawn once asked for")
                page.uncheck("#messages")
            page.wait_for_timeout(200)

            # Zoom in keeps the axis sane; a click on an operation shows it.
            page.click("#to-finding")
            page.wait_for_timeout(200)
            page.click("#zoom-out")
            page.wait_for_timeout(200)
            lo, hi = float(page.input_value("#from")), float(page.input_value("#to"))
            check(hi > lo, f"a window of {lo}..{hi}")
            op = page.locator("#timeline rect[data-op]").first
            op.dispatch_event("click")
            page.wait_for_timeout(100)
            details = page.inner_text("#details")
            check(" by " in page.inner_text("#details-title"), f"the click showed: {details}")
            check(op.get_attribute("data-text") in details, "the operation's trace line is not shown")

            page.click("#to-finding")
            page.wait_for_timeout(300)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=args.screenshot)
        finally:
            browser.close()
    check(not problems, "the page reported: " + "; ".join(problems))
    print(f"page ok: {page_path} ({ops} operations drawn over the whole run); "
          f"screenshot {args.screenshot}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"page check failed: {e}", file=sys.stderr)
        sys.exit(1)
