#!/usr/bin/python3
"""
A throw-away OpenStack Swift all-in-one with the s3api middleware, on loopback, for tests
and the demo. Run with Debian's /usr/bin/python3 (python3-swift is a Debian package):

    /usr/bin/python3 aio.py BASE PORT [--user NAME] [--ignore-stdin]

BASE is an existing (temp) folder: the config goes to BASE/etc, the rings too, the data to
BASE/srv and the logs to BASE/log/*.log. The proxy (S3 endpoint, path-style addressing,
region us-east-1, access key test:tester, secret testing) listens on 127.0.0.1:PORT; the
account, container and object servers on free loopback ports of their own. Each server runs
Swift's own run_wsgi (workers = 0) in a child process of this one.

Protocol: stdout carries only these lines
    READY <port>          all four servers answer
    PROXY DOWN            after SIGUSR1: the proxy is stopped (its port is closed)
    PROXY UP              after SIGUSR2: the proxy answers again, on the same port
    PROXY FAILED <why>    after SIGUSR2: the proxy could not be started again
Errors go to stderr (exit status 1). SIGTERM, SIGINT or the end of stdin (the caller died)
stop everything; each server also dies with this process (PR_SET_PDEATHSIG).

Slow endpoint: while the file BASE/slow exists and holds a number N > 0, the proxy sleeps N
seconds before handling each request (read per request; GET /healthcheck is exempt); "N PUT"
(methods after N) delays only requests with one of those methods. The sleep comes before the
request reaches Swift: a body being sent is not read meanwhile.
"""

import argparse
import ctypes
import errno
import http.client
import logging
import os
import pwd
import select
import signal
import socket
import sys
import time
import traceback

SERVERS = ("account", "container", "object", "proxy")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
# tempauth needs a cache middleware; nothing listens here (and only root could), so each
# memcache call fails at once with "connection refused" and the caller goes on uncached.
DEAD_MEMCACHE = "127.0.0.1:1"


def die(msg):
    sys.stderr.write("aio.py: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(1)


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def port_free(port):
    """Binds 127.0.0.1:port without SO_REUSEPORT (eventlet sets it, which would share a
    port with another listener of the same user): None if free, else the error text."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no clash
        s.bind(("127.0.0.1", port))
        return None
    except OSError as e:
        return os.strerror(e.errno) if e.errno else str(e)
    finally:
        s.close()


def pick_port(taken):
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in taken:
            return port


# ---------------------------------------------------------------- configuration


def write_configs(base, ports, user):
    etc = os.path.join(base, "etc")
    common = [
        "[DEFAULT]",
        "bind_ip = 127.0.0.1",
        "workers = 0",
        "user = %s" % user,
        "swift_dir = %s" % etc,
        "devices = %s" % os.path.join(base, "srv"),
        "mount_check = false",
        "fallocate_reserve = 0",
        "disable_fallocate = true",
        "bind_timeout = 2",
        "log_level = INFO",
    ]

    def write(name, lines):
        with open(os.path.join(etc, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    write(
        "swift.conf",
        [
            "[swift-hash]",
            "swift_hash_path_suffix = %s" % os.urandom(8).hex(),
            "swift_hash_path_prefix = %s" % os.urandom(8).hex(),
            "",
            "[storage-policy:0]",
            "name = Policy-0",
            "default = yes",
        ],
    )
    for kind in ("account", "container", "object"):
        app = ["[app:%s-server]" % kind, "use = egg:swift#%s" % kind]
        if kind == "object":
            # The object server tells the container server about each new object; after
            # the default 1 s it gives up and queues the update (for a replicator that does
            # not run here), and the listing misses the object.
            app.append("container_update_timeout = 30")
        write(
            "%s-server.conf" % kind,
            common
            + [
                "bind_port = %d" % ports[kind],
                "log_name = %s-server" % kind,
                "",
                "[pipeline:main]",
                "pipeline = healthcheck %s-server" % kind,
                "",
                "[filter:healthcheck]",
                "use = egg:swift#healthcheck",
                "",
            ]
            + app,
        )
    write(
        "proxy-server.conf",
        common
        + [
            "bind_port = %d" % ports["proxy"],
            "log_name = proxy-server",
            "",
            "[pipeline:main]",
            "pipeline = slow catch_errors gatekeeper healthcheck proxy-logging cache listing_formats"
            " s3api tempauth copy slo dlo proxy-logging proxy-server",
            "",
            "[app:proxy-server]",
            "use = egg:swift#proxy",
            "account_autocreate = true",
            "",
            "[filter:slow]",
            "paste.filter_factory = __main__:slow_filter_factory",
            "slow_file = %s" % os.path.join(base, "slow"),
            "",
            "[filter:catch_errors]",
            "use = egg:swift#catch_errors",
            "",
            "[filter:gatekeeper]",
            "use = egg:swift#gatekeeper",
            "",
            "[filter:healthcheck]",
            "use = egg:swift#healthcheck",
            "",
            "[filter:proxy-logging]",
            "use = egg:swift#proxy_logging",
            "",
            "[filter:cache]",
            "use = egg:swift#memcache",
            "memcache_servers = %s" % DEAD_MEMCACHE,
            "",
            "[filter:listing_formats]",
            "use = egg:swift#listing_formats",
            "",
            "[filter:s3api]",
            "use = egg:swift#s3api",
            "location = us-east-1",
            "",
            "[filter:tempauth]",
            "use = egg:swift#tempauth",
            "user_test_tester = testing .admin",
            "",
            "[filter:copy]",
            "use = egg:swift#copy",
            "",
            "[filter:slo]",
            "use = egg:swift#slo",
            "",
            "[filter:dlo]",
            "use = egg:swift#dlo",
        ],
    )


def build_rings(etc, ports):
    from swift.common.ring import RingBuilder

    for kind in ("account", "container", "object"):
        builder = RingBuilder(4, 1, 1)  # part power 4, 1 replica, min_part_hours 1
        builder.add_dev(
            {
                "id": 0,
                "region": 1,
                "zone": 1,
                "ip": "127.0.0.1",
                "port": ports[kind],
                "replication_ip": "127.0.0.1",
                "replication_port": ports[kind],
                "device": "d1",
                "weight": 1.0,
                "meta": "",
            }
        )
        builder.rebalance()
        builder.get_ring().save(os.path.join(etc, "%s.ring.gz" % kind))


# ---------------------------------------------------------------- in the server processes


def slow_filter_factory(global_conf, **local_conf):
    """paste filter: sleeps N seconds per request while the slow file holds N > 0, or only
    per request of the methods listed after N ("3 PUT")."""
    path = local_conf["slow_file"]

    def make(app):
        import eventlet  # swift's monkey patching leaves time.sleep blocking

        def slow(env, start_response):
            if env.get("PATH_INFO") != "/healthcheck":
                try:
                    with open(path) as f:
                        words = f.read().split()
                    delay = float(words[0]) if words else 0.0
                except (OSError, ValueError):
                    words, delay = [], 0.0
                if delay > 0 and (len(words) == 1 or env.get("REQUEST_METHOD") in words[1:]):
                    eventlet.sleep(delay)
            return app(env, start_response)

        return slow

    return make


def server_main(kind, conf_path, log_path, parent):
    """The forked child: becomes one Swift server (never returns)."""
    rc = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the launcher
        if os.getppid() != parent:
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

        import eventlet
        import swift.common.utils as utils
        import swift.common.wsgi as wsgi

        stream = open(log_path, "a", buffering=1)

        class FileLogHandler(logging.StreamHandler):
            """Replaces Swift's syslog handler: every logger writes to this server's file."""

            def __init__(self, *_args, **_kwargs):
                logging.StreamHandler.__init__(self, stream)

            def createLock(self):
                self.lock = utils.PipeMutex()

            def format(self, record):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
                return "%s.%03d %s" % (stamp, int(record.msecs), logging.StreamHandler.format(self, record))

        utils.ThreadSafeSysLogHandler = FileLogHandler
        # Swift binds with eventlet.listen, which sets SO_REUSEPORT: another listener on the
        # port would then silently share it. Without it, a clash is EADDRINUSE.
        wsgi.listen = lambda addr, **kw: eventlet.listen(addr, reuse_port=False, **kw)

        rc = wsgi.run_wsgi(conf_path, "%s-server" % kind)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(rc or 0)


# ---------------------------------------------------------------- the launcher


class Launcher:
    def __init__(self, base, ports, ignore_stdin):
        self.base = base
        self.ports = ports
        self.etc = os.path.join(base, "etc")
        self.logdir = os.path.join(base, "log")
        self.pids = {}
        self.pending = []
        self.watch_stdin = not ignore_stdin
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def log(self, msg):
        with open(os.path.join(self.logdir, "aio.log"), "a") as f:
            f.write("%s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), msg))

    def on_signal(self, signum, _frame):
        self.pending.append(signum)

    def install_signals(self):
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd

    def spawn(self, kind):
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(self.wake_r)
            os.close(self.wake_w)
            server_main(
                kind,
                os.path.join(self.etc, "%s-server.conf" % kind),
                os.path.join(self.logdir, "%s.log" % kind),
                parent,
            )
        self.pids[kind] = pid
        self.log("started %s-server (pid %d) on port %d" % (kind, pid, self.ports[kind]))

    def reap(self):
        """Collects exited children: the names of those that were meant to be running."""
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for kind, p in list(self.pids.items()):
                if p == pid:
                    del self.pids[kind]
                    dead.append((kind, status))
                    self.log("%s-server (pid %d) exited: %s" % (kind, pid, describe(status)))
        return dead

    def answers(self, kind):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[kind], timeout=2)
        try:
            conn.request("GET", "/healthcheck")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_answering(self, kinds):
        """Polls /healthcheck until each of `kinds` answers; an error text if one dies, the
        time runs out or a stop is asked for."""
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(kinds)
        while waiting:
            dead = self.reap()
            if dead:
                kind, status = dead[0]
                return "%s-server exited during start-up (%s); see %s" % (
                    kind,
                    describe(status),
                    os.path.join(self.logdir, "%s.log" % kind),
                )
            if self.stop_asked():
                return "stopped during start-up"
            waiting = [k for k in waiting if not self.answers(k)]
            if waiting and time.monotonic() > deadline:
                return "%s did not answer within %d s" % (", ".join(waiting), START_TIMEOUT)
            if waiting:
                time.sleep(0.05)
        return None

    def stop_asked(self):
        return any(s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) for s in self.pending)

    def kill(self, kinds):
        victims = {k: self.pids[k] for k in kinds if k in self.pids}
        for kind, pid in victims.items():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for kind, pid in victims.items():
            while True:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    self.log("%s-server (pid %d) stopped: %s" % (kind, pid, describe(status)))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    self.log("%s-server (pid %d) killed" % (kind, pid))
                    break
                time.sleep(0.02)
            self.pids.pop(kind, None)

    def start(self):
        for kind in SERVERS:
            err = port_free(self.ports[kind])
            if err:
                die("port %d (%s-server) is not free: %s" % (self.ports[kind], kind, err))
        for kind in SERVERS:
            self.spawn(kind)
        err = self.wait_answering(SERVERS)
        if err:
            self.kill(SERVERS)
            die(err)
        say("READY %d" % self.ports["proxy"])

    def stop_proxy(self):
        self.kill(["proxy"])
        say("PROXY DOWN")

    def start_proxy(self):
        if "proxy" in self.pids:
            say("PROXY UP")
            return
        err = port_free(self.ports["proxy"])
        if err:
            say("PROXY FAILED port %d is not free: %s" % (self.ports["proxy"], err))
            return
        self.spawn("proxy")
        err = self.wait_answering(["proxy"])
        if err:
            self.kill(["proxy"])
            say("PROXY FAILED %s" % err)
            return
        say("PROXY UP")

    def loop(self):
        while True:
            while self.pending:
                sig = self.pending.pop(0)
                if sig == signal.SIGUSR1:
                    self.stop_proxy()
                elif sig == signal.SIGUSR2:
                    self.start_proxy()
                else:
                    self.log("stopping (%s)" % signal.Signals(sig).name)
                    return 0
            dead = self.reap()
            if dead:
                kind, status = dead[0]
                sys.stderr.write(
                    "aio.py: %s-server died (%s); see %s\n"
                    % (kind, describe(status), os.path.join(self.logdir, "%s.log" % kind))
                )
                return 1
            fds = [self.wake_r] + ([0] if self.watch_stdin else [])
            try:
                ready, _, _ = select.select(fds, [], [], 1.0)
            except InterruptedError:
                continue
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            if 0 in ready:
                try:
                    data = os.read(0, 4096)
                except OSError as e:
                    data = b"" if e.errno != errno.EINTR else b"x"
                if not data:
                    self.log("stdin closed: stopping")
                    return 0


def describe(status):
    if os.WIFSIGNALED(status):
        return "signal %d" % os.WTERMSIG(status)
    return "exit %d" % os.WEXITSTATUS(status)


def main():
    ap = argparse.ArgumentParser(description="Swift all-in-one with s3api on loopback")
    ap.add_argument("base", help="an existing folder for etc/, srv/, log/")
    ap.add_argument("port", type=int, help="the proxy (S3) port on 127.0.0.1")
    ap.add_argument("--user", default=pwd.getpwuid(os.geteuid()).pw_name, help="user = in the server configs")
    ap.add_argument("--ignore-stdin", action="store_true", help="do not stop when stdin ends")
    args = ap.parse_args()

    base = os.path.abspath(args.base)
    if not os.path.isdir(base):
        die("%s is not a folder" % base)
    for sub in ("etc", "srv/d1", "log"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)

    ports = {"proxy": args.port}
    for kind in ("account", "container", "object"):
        ports[kind] = pick_port(set(ports.values()))

    try:
        import swift.common.utils as utils
        import swift.common.wsgi  # noqa: F401 (imported once here, shared by the forks)
        from swift.common.storage_policy import reload_storage_policies
    except ImportError as e:
        die("cannot import swift (%s): apt-get install python3-swift, and run with /usr/bin/python3" % e)

    write_configs(base, ports, args.user)
    build_rings(os.path.join(base, "etc"), ports)
    # Every program reads /etc/swift/swift.conf unless told otherwise.
    utils.set_swift_dir(os.path.join(base, "etc"))
    reload_storage_policies()

    launcher = Launcher(base, ports, args.ignore_stdin)
    launcher.install_signals()
    rc = 1
    try:
        launcher.start()
        rc = launcher.loop()
    finally:
        launcher.kill(list(launcher.pids))
    return rc


if __name__ == "__main__":
    sys.exit(main())
