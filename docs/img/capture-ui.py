#!/usr/bin/python3
"""capture-ui.py - screenshots of the local RabbitMQ management UI for
docs/operations.md, taken with headless Chromium (Debian's chromium).

    /usr/bin/python3 docs/img/capture-ui.py [PREFIX]      (default sendonce-demo)

Drives Chromium over its DevTools protocol (a minimal WebSocket client from
the standard library): logs in through the UI's own login function, then
captures the Queues page filtered to PREFIX, and the DLQ page
(PREFIX.dead) after pressing "Get Message(s)". The password is read from
/var/lib/sendonce-dev/broker.password inside this process: never on a
command line, never printed, never in a picture (the UI shows only the
user name).
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

UI = "http://127.0.0.1:15672/"
VHOST = "sendonce"
USER = "sendonce"
PASSWORD_FILE = "/var/lib/sendonce-dev/broker.password"
OUT = os.path.dirname(os.path.abspath(__file__))


class Cdp:
    """One WebSocket to one page target; call() sends a command and waits
    for its answer (events in between are dropped)."""

    def __init__(self, ws_url):
        rest = ws_url[len("ws://"):]
        hostport, path = rest.split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("websocket handshake refused")
        self.next_id = 0

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("websocket closed")
            buf += chunk
        return buf

    def _send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = bytes([0x81, 0x80 | n])
        elif n < 65536:
            header = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def _recv(self):
        message = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._recv_exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._recv_exact(8), "big")
            message += self._recv_exact(n)
            if b0 & 0x80:  # FIN
                return message.decode()

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method,
                               "params": params}))
        while True:
            msg = json.loads(self._recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression,
                      returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.js(expression):
                return True
            time.sleep(0.25)
        debug = os.path.join(tempfile.gettempdir(), "capture-ui-debug.png")
        with open(debug, "wb") as f:
            f.write(base64.b64decode(
                self.call("Page.captureScreenshot", format="png")["data"]))
        raise RuntimeError("timed out waiting for: %s (page: %s)" %
                           (expression, debug))

    def shot(self, name, clip=None):
        params = {"format": "png"}
        if clip:
            # The clip is in page coordinates, below the first screen.
            params["clip"] = dict(clip, scale=1)
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.call("Page.captureScreenshot",
                                          **params)["data"])
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data)
        print("wrote %s (%d bytes)" % (path, len(data)))


def main():
    prefix = sys.argv[1] if len(sys.argv) > 1 else "sendonce-demo"
    with open(PASSWORD_FILE) as f:
        password = f.read().strip()
    profile = tempfile.mkdtemp(prefix="sendonce-chromium.")
    browser = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
         "--hide-scrollbars", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--user-data-dir=" + profile,
         "--window-size=1280,860", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        for _ in range(100):
            if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                break
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen(
            "http://127.0.0.1:%d/json/list" % port))
        page = [t for t in targets if t["type"] == "page"][0]
        cdp = Cdp(page["webSocketDebuggerUrl"])
        cdp.call("Page.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1280,
                 height=860, deviceScaleFactor=1, mobile=False)

        # Log in with the UI's own function (it stores the login cookie),
        # then load the app again as a logged-in user.
        cdp.call("Page.navigate", url=UI)
        cdp.wait_for("typeof set_auth_pref === 'function' && "
                     "document.querySelector('input[name=username]') !== null")
        cdp.js("set_auth_pref(%s); true" % json.dumps(USER + ":" + password))
        password = None

        # Load the app again, now logged in (it opens on Overview).
        cdp.call("Page.reload", ignoreCache=True)
        cdp.wait_for("document.body.textContent.includes('User ' + %s)" % json.dumps(USER))

        # Queues, filtered to the demo's prefix.
        cdp.js("location.hash = '#/queues'; true")
        cdp.wait_for("document.getElementById('queues-name') !== null && "
                     "document.querySelector('table.list') !== null")
        # The name filter of the paginated list (the same as typing it).
        cdp.js("$('#queues-name').val(%s); update_pages('queues', 1); true" %
               json.dumps(prefix))
        cdp.wait_for("Array.from(document.querySelectorAll("
                     "'table.list tbody tr')).length > 0 && "
                     "Array.from(document.querySelectorAll("
                     "'table.list tbody tr')).every(r => "
                     "r.textContent.includes(%s))" % json.dumps(prefix))
        time.sleep(1)
        cdp.shot("ui-queues.png")

        # The main queue's page: its arguments spelled out under Features.
        cdp.js("location.hash = %s; true" %
               json.dumps("#/queues/%s/%s.campaigns" % (VHOST, prefix)))
        cdp.wait_for("document.body.textContent.includes('delivery-limit')")
        time.sleep(1.5)
        top = cdp.js("var d = Array.from(document.querySelectorAll("
                     "'h3, h2')).find(h => h.textContent.trim() == "
                     "'Details');"
                     "d.getBoundingClientRect().top + window.scrollY")
        cdp.shot("ui-main-queue.png",
                 clip={"x": 0, "y": top - 10, "width": 1280, "height": 300})

        # The DLQ: open "Get messages" and fetch the first message (the
        # UI's default ack mode requeues it: nothing is consumed).
        cdp.js("location.hash = %s; true" %
               json.dumps("#/queues/%s/%s.dead" % (VHOST, prefix)))
        cdp.wait_for("Array.from(document.querySelectorAll('h2'))"
                     ".some(h => h.textContent.includes('Get messages'))")
        cdp.js("var h = Array.from(document.querySelectorAll('h2'))"
               ".find(h => h.textContent.includes('Get messages'));"
               "var s = h.parentElement;"
               "if (!$(s).find('div.hider').is(':visible')) $(h).click();"
               "true")
        time.sleep(0.5)
        cdp.js("$('input[type=submit][value=\"Get Message(s)\"]').click(); true")
        cdp.wait_for("document.getElementById('msg-wrapper') !== null && "
                     "document.getElementById('msg-wrapper')"
                     ".textContent.includes('Payload')")
        time.sleep(0.5)
        rect = cdp.js("var h = Array.from(document.querySelectorAll('h2'))"
                      ".find(h => h.textContent.includes('Get messages'));"
                      "var r = h.getBoundingClientRect();"
                      "var w = document.getElementById('msg-wrapper')"
                      ".getBoundingClientRect();"
                      "({y: r.top + window.scrollY,"
                      "  h: w.bottom - r.top + 10})")
        cdp.shot("ui-dlq-message.png",
                 clip={"x": 0, "y": rect["y"] - 10, "width": 1280,
                       "height": min(rect["h"] + 10, 1100)})
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
