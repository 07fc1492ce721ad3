#!/usr/bin/env python3
"""Creates COUNT running Pods bound to NODE through the API server, for memory benchmarks.

Usage: pods.py KUBECONFIG NODE COUNT [PER_SERVICE (default 5)]

Pod n is default/bench-pod-<n>: one container with a named port, labels
`app: svc-<n / PER_SERVICE>` (the Service whose endpoint it is in the DNS benchmark), status
Running with podIP 10.(200 + n/65536).(n/256 % 256).(n % 256), the same address as the DNS
benchmark's n-th endpoint. No Ready condition is written, so the node lifecycle controller has
nothing to mark NotReady on the node, which has no kubelet. Each Pod is created, then its status
written (`/status`), over keep-alive connections from 8 threads. Prints the count and the time.
Stdlib only; the kubeconfig is the lab's admin one (certificate files).
"""
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse

WORKERS = 8


def connect(kubeconfig):
    # The lab's admin kubeconfig: one cluster, one user, certificates as file paths.
    fields = {}
    with open(kubeconfig) as f:
        for line in f:
            key, sep, value = line.strip().partition(": ")
            if sep and key in ("server", "certificate-authority", "client-certificate", "client-key"):
                fields.setdefault(key, value.strip())
    missing = {"server", "certificate-authority", "client-certificate", "client-key"} - fields.keys()
    if missing:
        sys.exit(f"pods.py: {kubeconfig} has no {', '.join(sorted(missing))} (a knet-lab admin kubeconfig has)")
    ctx = ssl.create_default_context(cafile=fields["certificate-authority"])
    ctx.load_cert_chain(fields["client-certificate"], fields["client-key"])
    url = urllib.parse.urlparse(fields["server"])
    return lambda: http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=60)


def address(n):
    return f"10.{200 + n // 65536}.{n // 256 % 256}.{n % 256}"


def pod(n, node, per_service):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"bench-pod-{n}", "namespace": "default",
                     "labels": {"app": f"svc-{n // per_service}", "bench": "pods"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                            "args": ["netexec", "--http-port=8080"],
                            "ports": [{"name": "http", "containerPort": 8080}]}],
        },
    }


def status(n):
    ip = address(n)
    return {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.99.0.1"}}


def call(conn, method, path, body, content_type):
    conn.request(method, path, body=json.dumps(body), headers={"Content-Type": content_type})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300 and not (method == "POST" and resp.status == 409):
        raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {data[:300]!r}")


def work(new_conn, node, per_service, ids, errors):
    conn = new_conn()
    base = "/api/v1/namespaces/default/pods"
    try:
        for n in ids:
            call(conn, "POST", base, pod(n, node, per_service), "application/json")
            call(conn, "PATCH", f"{base}/bench-pod-{n}/status", status(n),
                 "application/merge-patch+json")
    except Exception as e:  # reported by the main thread
        errors.append(str(e))


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: pods.py KUBECONFIG NODE COUNT [PER_SERVICE]")
    kubeconfig, node = sys.argv[1], sys.argv[2]
    try:
        count = int(sys.argv[3])
        per_service = int(sys.argv[4]) if len(sys.argv) == 5 else 5
    except ValueError:
        sys.exit("pods.py: COUNT and PER_SERVICE must be whole numbers")
    if count < 1 or per_service < 1:
        sys.exit("pods.py: COUNT and PER_SERVICE must be at least 1")
    new_conn = connect(kubeconfig)
    errors = []
    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(new_conn, node, per_service,
                                                   range(w, count, WORKERS), errors))
               for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"pods.py: {len(errors)} workers failed; first: {errors[0]}")
    print(f"{count} Pods created and running on {node} in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
