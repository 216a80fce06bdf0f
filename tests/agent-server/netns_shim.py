"""Test bed only: gives an agent-server process the network of a pod with an address of its own.

In a cluster every pod has its own network namespace: the agent server binds 0.0.0.0:60000 and
calls itself at 127.0.0.1, and a hundred pods on one node do the same without colliding. The
simulated kubelet runs pods as plain processes on one loopback instead, each given an address of
its own in 127.0.0.0/8 (its status.podIP) in OPENHANDS_TESTBED_POD_IP. This module, loaded at
interpreter start by netns_shim.pth in the test bed's virtual environment, maps the pod's
"this host" addresses onto that address: binds to the wildcard or to loopback, and connections
to loopback. Without the variable (any other use of the environment) it does nothing.
"""

import os
import socket

_pod_ip = os.environ.pop("OPENHANDS_TESTBED_POD_IP", "")

if _pod_ip:
    _THIS_HOST = frozenset({"", "0.0.0.0", "127.0.0.1", "localhost"})
    _LOOPBACK = frozenset({"127.0.0.1", "localhost"})
    _bind = socket.socket.bind
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def _mapped(sock, address, hosts):
        if sock.family == socket.AF_INET and isinstance(address, tuple) and address[0] in hosts:
            return (_pod_ip,) + tuple(address[1:])
        return address

    def bind(self, address):
        return _bind(self, _mapped(self, address, _THIS_HOST))

    def connect(self, address):
        return _connect(self, _mapped(self, address, _LOOPBACK))

    def connect_ex(self, address):
        return _connect_ex(self, _mapped(self, address, _LOOPBACK))

    socket.socket.bind = bind
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
