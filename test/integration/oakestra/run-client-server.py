#!/usr/bin/env python3
"""Drives root the way Oakestra's ATC'23 experiment scripts do (Experiments/Test2-network-overhead/
run-test2.py and Experiments/cleanup.py in oakestra/USENIX-ATC23-Oakestra-Artifacts): `requests`,
status checks, json.loads(resp.json()), the same routes and fields. Only the images differ: process
stand-ins until the container runtime exists. Exits non-zero with the reason on the first failure;
the last line of stdout is a JSON summary.

usage: run-client-server.py <root url> <admin password>
"""
import json
import random
import sys
import time

import requests

URL = sys.argv[1].rstrip("/")
PASSWORD = sys.argv[2]
RR_IP = "10.30.30.30"

# The client: like Test 2's nettime image, an HTTP server on 5002 (host port 50002) that, asked for
# /<ip>/..., calls http://<ip>/ 100 times and answers "<200s> <the servers that answered>".
CLIENT = r'''
import http.server, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        target = self.path.strip("/").split("/")[0]
        ok, seen = 0, set()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):
            try:
                with opener.open("http://%s/" % target, timeout=5) as r:
                    if r.status == 200:
                        ok += 1
                        seen.add(r.read().decode().strip())
            except Exception:
                pass
        body = ("%d %s" % (ok, ",".join(sorted(seen)))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 5002), H).serve_forever()
'''

# The nginx stand-in: answers every GET with the address it was reached on (its instance's own).
SERVER = r'''
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.connection.getsockname()[0].encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
'''

COMMON = {"microserviceID": "", "microservice_namespace": "test", "virtualization": "process", "memory": 50, "vcpus": 0.2,
          "vgpus": 0, "vtpus": 0, "bandwidth_in": 0, "bandwidth_out": 0, "storage": 0, "state": "", "added_files": []}
DESCRIPTOR = {
    "sla_version": "v2.0",
    "customerID": "Admin",
    "applications": [{
        "applicationID": "",
        "application_name": "nettime",
        "application_namespace": "test",
        "application_desc": "test2 demo",
        "microservices": [
            dict(COMMON, microservice_name="client", code="client", port="50002:5002/tcp", cmd=["python3", "-c", CLIENT]),
            dict(COMMON, microservice_name="nginx", code="nginx", port="6080:80/tcp", cmd=["python3", "-c", SERVER],
                 addresses={"rr_ip": RR_IP}, constraints=[{"type": "anti_affinity"}]),
        ],
    }],
}


def fail(msg):
    print("FAILED: " + msg)
    sys.exit(1)


def getlogin():
    # As the scripts do: user "Admin" (root matches names in any case), the operator's password.
    r = requests.post(URL + "/api/auth/login", json={"username": "Admin", "password": PASSWORD})
    if r.status_code != 200:
        fail("login: HTTP %d %s" % (r.status_code, r.text))
    return r.json()["token"]


def head():
    return {"Authorization": "Bearer {}".format(getlogin())}


def register_app():
    DESCRIPTOR["applications"][0]["application_namespace"] = "".join(random.choice("qwertyuiopasdfghjklzxcvbnm") for _ in range(5))
    resp = requests.post(URL + "/api/application", headers=head(), json=DESCRIPTOR)
    if resp.status_code != 200:
        fail("register: HTTP %d %s" % (resp.status_code, resp.text))
    for app in json.loads(resp.json()):
        if app.get("application_name") == "nettime":
            return app.get("applicationID"), app.get("microservices")
    fail("register: no nettime application in the answer")


def scale_up_service(amount, microserviceid):
    for _ in range(int(amount)):
        resp = requests.post(URL + "/api/service/" + microserviceid + "/instance", headers=head())
        if resp.status_code != 200:
            fail("scale up %s: HTTP %d %s" % (microserviceid, resp.status_code, resp.text))


def check_deployment(microservices):
    clientip = None
    for microservice in microservices:
        resp = requests.get(URL + "/api/service/" + microservice, headers=head())
        if resp.status_code != 200:
            return False, "HTTP %d" % resp.status_code
        json_resp = json.loads(resp.json())
        instances = json_resp["instance_list"]
        if not instances:
            return False, "No instances of " + json_resp["microservice_name"]
        for instance in instances:
            if json_resp["microservice_name"] == "client":
                clientip = instance["publicip"]
            if instance["status"] != "RUNNING":
                return False, "%s instance %d is %s: %s" % (json_resp["microservice_name"], instance["instance_number"], instance["status"], instance.get("status_detail"))
    return True, clientip


def service(microserviceid):
    resp = requests.get(URL + "/api/service/" + microserviceid, headers=head())
    if resp.status_code != 200:
        fail("GET service %s: HTTP %d" % (microserviceid, resp.status_code))
    return json.loads(resp.json())


def delete_all_apps():
    resp = requests.get(URL + "/api/services", headers=head())
    if resp.status_code != 200:
        fail("GET /api/services: HTTP %d" % resp.status_code)
    deleted = 0
    for app in json.loads(resp.json()):
        r = requests.delete(URL + "/api/application/" + app.get("applicationID"), headers=head())
        deleted += r.status_code == 200
    return deleted


def main():
    appid, microservices = register_app()
    client_id, server_id = microservices[0], microservices[1]
    scale_up_service(2, server_id)
    scale_up_service(1, client_id)

    deadline = time.time() + 90
    ok, detail = check_deployment(microservices)
    while not ok:
        if time.time() > deadline:
            fail("deployment never finished: " + detail)
        time.sleep(1)
        ok, detail = check_deployment(microservices)
    clientip = detail
    if len(service(server_id)["instance_list"]) != 2:
        fail("the server is not scaled to 2")

    # The client through its host port on its worker's public address, asked to call the rr_ip 100 times.
    # RUNNING means the process started, not that it listens yet (run-test2.py waits 60 s first).
    deadline = time.time() + 30
    while True:
        try:
            r = requests.get("http://%s:50002/%s/oakestra/results.csv" % (clientip, RR_IP), timeout=200)
            break
        except requests.exceptions.ConnectionError as e:
            if time.time() > deadline:
                fail("benchmark through %s:50002: %s" % (clientip, e))
            time.sleep(1)
    if r.status_code != 200:
        fail("benchmark through %s:50002: HTTP %d" % (clientip, r.status_code))
    count, _, servers = r.text.partition(" ")
    servers = [s for s in servers.split(",") if s]

    # Undeploy one server instance by its instance_number.
    victim = service(server_id)["instance_list"][-1]["instance_number"]
    resp = requests.delete(URL + "/api/service/%s/instance/%d" % (server_id, victim), headers=head())
    if resp.status_code != 200:
        fail("undeploy instance %d: HTTP %d %s" % (victim, resp.status_code, resp.text))
    left = [i["instance_number"] for i in service(server_id)["instance_list"]]

    deleted = delete_all_apps()
    resp = requests.get(URL + "/api/services", headers=head())
    remaining = json.loads(resp.json())
    print(json.dumps({"application": appid, "clientip": clientip, "ok": int(count), "servers": servers, "undeployed": victim,
                      "left": left, "deleted": deleted, "remaining": remaining}))


if __name__ == "__main__":
    main()
