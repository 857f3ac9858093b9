"""Checks the status page as Chromium rendered it (--dump-dom) for what a
person looks for: the gateway, the broker connection, the buffer, every
sensor with its values and units, the failing one with its error.

  statuspage.py DOM.html GATEWAY_ID BROKER_URL
"""
import re
import sys
from html.parser import HTMLParser


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.text = [], []
        self.sections = {}  # id -> text
        self.rows = {}  # data-sensor -> text
        self.title = ""
        self.refs = []  # src/href attributes
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if k in a:
                self.refs.append(a[k])
        if tag == "script":
            self.scripts += 1
        if tag in ("meta", "link", "br", "img", "input"):
            return
        key = a.get("data-sensor") and ("row", a["data-sensor"]) or a.get("id") and ("id", a["id"]) or None
        self.stack.append((tag, key, len(self.text)))

    def handle_endtag(self, tag):
        while self.stack:
            t, key, start = self.stack.pop()
            if key:
                text = " ".join(" ".join(self.text[start:]).split())
                (self.rows if key[0] == "row" else self.sections)[key[1]] = text
            if t == tag:
                break

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "title":
            self.title += data
        self.text.append(data)


dom, gw, url = sys.argv[1:4]
p = Page()
p.feed(open(dom, encoding="utf-8").read())
body = " ".join(" ".join(p.text).split())
checks = []


def want(what, ok):
    checks.append((what, bool(ok)))


want("the title names the gateway", gw in p.title)
want(f"the heading says gatewayd {gw}", re.search(rf"gatewayd {re.escape(gw)}", body))
summary = p.sections.get("summary", "")
want("the summary says the broker is connected", "Broker connected" in summary)
want("the summary counts 1 sensor down and 3 up", "1 down" in summary and "3 up" in summary)
broker = p.sections.get("broker", "")
want(f"the broker card names {url} and since when", url in broker and "Connected since" in broker and "UTC" in broker)
want("the broker card counts reconnects", re.search(r"Reconnects \d+", broker))
buf = p.sections.get("buffer", "")
want("the buffer card tells waiting, dropped and where it is kept",
     re.search(r"Waiting \d+ readings", buf) and "Dropped 0" in buf and "in memory" in buf)
want("4 sensor rows", sorted(p.rows) == ["barometer", "bedroom", "cellar", "living-room"])
for name in ("living-room", "bedroom"):
    r = p.rows.get(name, "")
    want(f"{name}: simulated, a temperature in °C and a humidity in %, up, read seconds ago",
         "simulated" in r and re.search(r"-?\d+(\.\d+)? °C temperature", r) and re.search(r"\d+(\.\d+)? % humidity", r)
         and re.search(r"\bup\b", r) and re.search(r"[\d.]+s ago", r) and "0 failed" in r)
r = p.rows.get("barometer", "")
want("barometer: exec, 1013.25 hPa pressure, up", "exec" in r and "1013.25 hPa pressure" in r and re.search(r"\bup\b", r))
r = p.rows.get("cellar", "")
want("cellar: down, never read, its error shown", re.search(r"\bdown\b", r) and "never" in r
     and "cannot open /dev/i2c-1: no such device" in r and "0 reads" in r)
want("the page says which sensor is down", "Down: cellar" in body)
want("links to /metrics and /api/status", "metrics" in p.refs and "api/status" in p.refs)
want("no script, no external reference", p.scripts == 0 and not any(re.match(r"(https?:)?//", h) for h in p.refs))

bad = [w for w, ok in checks if not ok]
for w, ok in checks:
    print(("ok      " if ok else "MISSING ") + w)
if bad:
    print("---- page text ----\n" + body[:3000])
    sys.exit(1)
print(f"{len(checks)} checks on the rendered page")
