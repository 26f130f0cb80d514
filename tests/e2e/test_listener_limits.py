"""The listener survives its clients: a flood of idle and half-sent-header
connections from the client's own address does not stop signed calls, the
flood is evicted down to the per-source cap at once and the rest is closed
by the header timeout; idle keep-alive connections close after the idle
timeout. No tasks are run."""

import resource
import socket
import time

import pytest

from conftest import fresh_server

HEADER_S = 6
IDLE_S = 8
PER_SOURCE = 200
FLOOD = 2000


@pytest.fixture
def limited_server():
    yield from fresh_server([
        "--header-timeout", f"{HEADER_S}s", "--idle-timeout", f"{IDLE_S}s",
        "--body-timeout", "3s", "--max-connections", "1000",
        "--max-connections-per-source", str(PER_SOURCE)])


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"the test needs {need} open files; the hard limit is {hard}", pytrace=False)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def host_port(srv):
    host, port = srv.endpoint.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def is_closed(s):
    """True once the server closed `s` (EOF or reset); never blocks."""
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    # A flood connection is never answered, only closed.
    assert data == b"", f"a flood connection was answered: {data[:200]!r}"
    return True


def wait_closed(s, limit):
    """Seconds until the server closes `s`; fails after `limit`."""
    t = time.monotonic()
    s.settimeout(limit)
    try:
        while s.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        pytest.fail(f"connection still open after {limit} s")
    return time.monotonic() - t


def test_signed_calls_succeed_during_a_flood_from_the_same_address(limited_server):
    srv = limited_server
    raise_nofile(FLOOD + 512)
    addr = host_port(srv)
    kms = srv.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]

    flood = []
    try:
        for i in range(FLOOD):
            s = socket.create_connection(addr, timeout=10)
            if i % 2:
                # Half a request head, never finished.
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.ListKeys\r\n")
            flood.append(s)
        opened = time.monotonic()

        # The cap held: all but (about) the newest PER_SOURCE were evicted
        # right away, well before the header timeout could close them.
        time.sleep(0.5)
        closed = sum(is_closed(s) for s in flood)
        assert time.monotonic() - opened < HEADER_S, "too slow to tell eviction from the timeout"
        assert closed >= FLOOD - PER_SOURCE - 5, f"only {closed} of {FLOOD} flood connections closed"
        assert closed < FLOOD, "the flood's newest connections should still be held"

        # Signed calls, through boto3 and the AWS CLI, while the newest of the flood
        # are held (each new connection evicts the longest-waiting one).
        for _ in range(20):
            blob = kms.encrypt(KeyId=key_id, Plaintext=b"during the flood")["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"during the flood"
        keys = srv.aws("kms", "list-keys")["Keys"]
        assert key_id in [k["KeyId"] for k in keys]

        assert time.monotonic() - opened < HEADER_S, "the signed calls outlasted the flood"

        # The rest are closed by the header timeout.
        deadline = opened + HEADER_S + 5
        while time.monotonic() < deadline and not all(is_closed(s) for s in flood):
            time.sleep(0.2)
        still_open = [s for s in flood if not is_closed(s)]
        assert not still_open, f"{len(still_open)} flood connections outlived the header timeout"

        # And the server is still answering.
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id
    finally:
        for s in flood:
            s.close()


def test_idle_keep_alive_and_half_sent_headers_are_closed_after_their_timeouts(limited_server):
    addr = host_port(limited_server)

    # A whole (unsigned) request: answered with the AWS error, then kept
    # alive until the idle timeout, which is longer than the header timeout.
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.ListKeys\r\n"
              b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}")
    head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 4"), head
    assert b"MissingAuthenticationTokenException" in head, head
    took = wait_closed(s, IDLE_S + 5)
    assert IDLE_S - 0.5 <= took <= IDLE_S + 2, f"idle connection closed after {took:.1f} s"
    s.close()

    h = socket.create_connection(addr, timeout=10)
    h.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    took = wait_closed(h, HEADER_S + 5)
    assert HEADER_S - 0.5 <= took <= HEADER_S + 2, f"half-sent header closed after {took:.1f} s"
    h.close()
