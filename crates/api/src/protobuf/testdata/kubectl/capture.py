#!/usr/bin/env python3
"""Records the protobuf body a real kubectl sends, and the JSON it prints for the same object.

Usage: capture.py NAME KUBECTL ARGS...   e.g.
  capture.py configmap .cache/tools/bin/kubectl create configmap x --from-literal=a=b
writes NAME.pb (the request body kubectl POSTs to a loopback listener standing in for the API
server) and NAME.json (`--dry-run=client -o json` of the same command) beside this script.
"""

import http.server
import os
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


class Recorder(http.server.BaseHTTPRequestHandler):
    body = None

    def do_POST(self):
        Recorder.body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/vnd.kubernetes.protobuf"
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    name, kubectl, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    flags = [f"--server=http://127.0.0.1:{server.server_port}", "--kubeconfig=/dev/null"]
    subprocess.run([kubectl, *flags, *args], check=True, capture_output=True)
    server.shutdown()
    if Recorder.body is None:
        sys.exit("kubectl sent no POST")
    with open(os.path.join(HERE, name + ".pb"), "wb") as f:
        f.write(Recorder.body)
    printed = subprocess.run(
        [kubectl, "--dry-run=client", "-o", "json", *args], check=True, capture_output=True
    ).stdout
    with open(os.path.join(HERE, name + ".json"), "wb") as f:
        f.write(printed)


if __name__ == "__main__":
    main()
