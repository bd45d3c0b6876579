"""The XML-RPC servers OneClient's tests talk to, on loopback (no mocks)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest

from econe.one.client import ACTION, AUTHORIZATION, NO_EXISTS


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    protocol_version = "HTTP/1.1"  # keep-alive, like oned's xmlrpc-c server

    def log_message(self, *args):  # keep test output quiet
        pass


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True  # keep-alive handler threads must not block shutdown


@pytest.fixture
def oned():
    calls = []
    server = _Server(("127.0.0.1", 0), requestHandler=_Handler, logRequests=False, allow_none=False)

    def vm_info(session, vm_id, decrypt=False):
        calls.append(("one.vm.info", session, vm_id, decrypt))
        if session != "alice:pw":
            return [
                False,
                "[one.vm.info] User couldn't be authenticated, aborting call.",
                256,
                -1,
                -1,
            ]
        if vm_id == 5:
            return [True, "<VM><ID>5</ID></VM>", 0]
        return [
            False,
            f"[one.vm.info] Error getting virtual machine [{vm_id}].",
            NO_EXISTS,
            vm_id,
            -1,
        ]

    def vm_update(session, vm_id, template, append):
        calls.append(("one.vm.update", session, vm_id, template, append))
        if not isinstance(append, int) or isinstance(append, bool):
            # what xmlrpc-c answers for a mistyped parameter
            raise xmlrpc.client.Fault(-501, "Parameter that is supposed to be int is not")
        return [True, vm_id, 0]

    def vm_action(session, action, vm_id):
        return [False, 'Error performing action "poweroff": wrong state PENDING.', ACTION, vm_id]

    def old_style(session):  # 3.4: three-element failure array
        return [False, "denied", AUTHORIZATION]

    def typed(session, flag, number):
        calls.append(("typed", type(flag).__name__, type(number).__name__))
        return [True, f"{flag!r} {number!r}", 0]

    def sleepy(session, seconds):
        time.sleep(seconds)
        return [True, "late", 0]

    server.register_function(vm_info, "one.vm.info")
    server.register_function(vm_update, "one.vm.update")
    server.register_function(vm_action, "one.vm.action")
    server.register_function(old_style, "one.old.call")
    server.register_function(typed, "one.typed")
    server.register_function(sleepy, "one.sleepy")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}/RPC2", calls
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_url() -> str:
    """An XML-RPC URL on a loopback port nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/RPC2"
