"""The peers side by side: Debian's smsd (smstools) and gammu-smsd, each
configured as a relay on one virtual modem of `simmask sim` paced like a
115200 baud serial line, measured the way `simmask bench relay` measures
simmask: from the end of the +CMTI the simulator sends to the first byte of
the relayed AT+CMGS, read from the simulator's port trace.

Used by scripts/performance; stdlib only.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request

SENDER = "+447700900501"
OTHER = "+447700900502"
BAUD = 115200


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


class Sim:
    """One `simmask sim` process with one paced modem."""

    def __init__(self, simmask, workdir, profile="generic"):
        self.process = subprocess.Popen(
            [simmask, "sim", "--modems", "1", "--profile", profile,
             "--baud", str(BAUD), "--links", os.path.join(workdir, "links"),
             "--control", "127.0.0.1:0", "--seed", "31", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, text=True)
        description = json.loads(self.process.stdout.readline())
        self.control = description["control"]
        modem = description["modems"][0]
        self.link = modem["link"]
        self.msisdn = modem["msisdn"]
        self.lines, self.seen, self.last_us, self.gathered = [], set(), 0, 0.0

    def send(self, text):
        http("POST", f"{self.control}/handsets/{SENDER}/sms",
             {"to": self.msisdn, "text": text})

    def received(self):
        return http("GET", f"{self.control}/handsets/{OTHER}/messages")

    def gather(self, every=1.0):
        """Fetches the trace's new lines, at most once per `every` seconds.

        The simulator keeps a port's last 4,096 lines, and gammu-smsd,
        polling without a pause, fills that in a few seconds: the trace is
        gathered as it goes (waits call this). Lines are fetched again from
        a little before the last one seen, since a paced line stamps some a
        moment ahead, and each is kept once."""
        if time.monotonic() - self.gathered < every:
            return
        self.gathered = time.monotonic()
        since = max(0, self.last_us - 200_000)
        for entry in http("GET", f"{self.control}/modems/0/trace?since={since}"):
            key = (entry["t_us"], entry["dir"], entry["line"])
            if key not in self.seen:
                self.seen.add(key)
                self.lines.append(entry)
                self.last_us = max(self.last_us, entry["t_us"])

    def pause(self, seconds):
        """Sleeps `seconds`, gathering the trace meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.gather()
            time.sleep(0.2)

    def wait_received(self, count, limit):
        """Waits up to `limit` seconds for the other handset to hold `count`
        messages, gathering the trace meanwhile; true when it does."""
        def enough():
            self.gather()
            return len(self.received()) >= count
        return wait_until(enough, limit)

    def trace(self):
        """Every line of the port's trace since the simulator started."""
        self.gather(every=0)
        return sorted(self.lines, key=lambda entry: entry["t_us"])

    def stop(self):
        stop_group(self.process)


def stop_group(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def line_us(nbytes):
    return nbytes * 10 / BAUD * 1e6


def overheads_ms(trace):
    """k-th +CMTI (its end) to the k-th AT+CMGS after it (its first byte)."""
    announced, out = [], []
    for entry in trace:
        line = entry["line"]
        if entry["dir"] == "tx" and line.startswith("+CMTI:"):
            announced.append(entry["t_us"])
        elif entry["dir"] == "rx" and line.upper().startswith("AT+CMGS") and announced:
            first_byte = entry["t_us"] - line_us(len(line) + 1)
            out.append(round((first_byte - announced.pop(0)) / 1000, 3))
    return out


def cmgs_times_s(trace):
    return [entry["t_us"] / 1e6 for entry in trace
            if entry["dir"] == "rx" and entry["line"].upper().startswith("AT+CMGS")]


def wait_until(check, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def start_smsd(workdir, link):
    spool = os.path.join(workdir, "spool")
    for sub in ["outgoing", "checked", "failed", "incoming", "sent"]:
        os.makedirs(os.path.join(spool, sub), exist_ok=True)
    handler = os.path.join(workdir, "relay.sh")
    with open(handler, "w") as f:
        # A received file: its text to the other party, through the spool.
        f.write(f"""#!/bin/sh
[ "$1" = RECEIVED ] || exit 0
body=$(sed '1,/^$/d' "$2")
tmp=$(mktemp {spool}/relay.XXXXXX)
printf 'To: {OTHER[1:]}\\n\\n%s\\n' "$body" > "$tmp"
mv "$tmp" {spool}/outgoing/
""")
    os.chmod(handler, 0o755)
    config = os.path.join(workdir, "smsd.conf")
    with open(config, "w") as f:
        f.write(SMSD_SETTINGS.format(spool=spool, handler=handler, link=link))
    return subprocess.Popen(["smsd", "-t", f"-c{config}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


# The fastest sensible smsd settings: poll the modem and the spool every
# loop (delaytime 0), no modem re-initialisation, network or signal checks.
SMSD_SETTINGS = """devices = GSM1
outgoing = {spool}/outgoing
checked = {spool}/checked
failed = {spool}/failed
incoming = {spool}/incoming
sent = {spool}/sent
logfile = {spool}/smsd.log
infofile = {spool}/smsd.running
pidfile = {spool}/smsd.pid
loglevel = 7
eventhandler = {handler}
delaytime = 0
delaytime_mainprocess = 0
errorsleeptime = 1
blocktime = 1
receive_before_send = no
autosplit = 0
incoming_utf8 = yes

[GSM1]
device = {link}
incoming = yes
baudrate = 115200
memory_start = 1
check_memory_method = 1
pre_init = no
check_network = 0
signal_quality_ber_ignore = yes
status_signal_quality = no
"""


def start_gammu(workdir, link):
    base = os.path.join(workdir, "gammu")
    for sub in ["inbox", "outbox", "sent", "error"]:
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    rc = os.path.join(workdir, "smsdrc")
    handler = os.path.join(workdir, "relay.sh")
    with open(handler, "w") as f:
        f.write(f"""#!/bin/sh
exec gammu-smsd-inject -c {rc} TEXT {OTHER} -text "$SMS_1_TEXT" >/dev/null 2>&1
""")
    os.chmod(handler, 0o755)
    with open(rc, "w") as f:
        f.write(GAMMU_SETTINGS.format(base=base, handler=handler, link=link))
    return subprocess.Popen(["gammu-smsd", "-c", rc], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


# The fastest sensible gammu-smsd settings: look for messages and the
# outbox on every loop, sleep as little as it allows between loops, no
# status, signal, battery or security checks.
GAMMU_SETTINGS = """[gammu]
connection = at115200
device = {link}

[smsd]
service = files
inboxpath = {base}/inbox/
outboxpath = {base}/outbox/
sentsmspath = {base}/sent/
errorsmspath = {base}/error/
logfile = {base}/smsd.log
debuglevel = 0
RunOnReceive = {handler}
ReceiveFrequency = 0
StatusFrequency = 0
CommTimeout = 0
SendTimeout = 10
LoopSleep = 0
CheckSecurity = 0
CheckBattery = 0
CheckSignal = 0
ResetFrequency = 0
HardResetFrequency = 0
DeliveryReport = no
"""


def measure(name, simmask, workdir, messages, spacing, burst, burst_window):
    """Latency over `messages` spaced `spacing` s apart, then a same-second
    burst of `burst` from one sender, followed for up to `burst_window` s."""
    os.makedirs(workdir, exist_ok=True)
    sim = Sim(simmask, workdir)
    peer = None
    try:
        peer = (start_smsd if name == "smsd" else start_gammu)(workdir, sim.link)
        # Ready once a first message goes through.
        sim.send("warm-up")
        ready = sim.wait_received(1, 90)
        result = {"system": name, "ready": ready}
        if not ready:
            return result
        warm = len(sim.received())
        skip = len(overheads_ms(sim.trace()))
        for n in range(messages):
            sim.send(f"latency {n}")
            sim.pause(spacing)
        sim.wait_received(warm + messages, 30)
        samples = overheads_ms(sim.trace())[skip:]
        result["samples_ms"] = samples
        result["relayed"] = len(sim.received()) - warm
        before = len(sim.received())
        marks = len(cmgs_times_s(sim.trace()))
        started = time.monotonic()
        sent_at = time.time()
        for n in range(burst):
            sim.send(f"burst {n:03} " + "x" * 140)
        result["burst_submit_seconds"] = round(time.monotonic() - started, 3)
        sim.wait_received(before + burst, burst_window)
        got = len(sim.received()) - before
        sends = cmgs_times_s(sim.trace())[marks:]
        result["burst"] = burst
        result["burst_relayed"] = got
        result["burst_window_seconds"] = burst_window
        if len(sends) >= 2:
            result["burst_per_second"] = round((len(sends) - 1) / (sends[-1] - sends[0]), 3)
        else:
            result["burst_per_second"] = 0.0
        result["burst_elapsed_seconds"] = round(time.time() - sent_at, 1)
        return result
    finally:
        if peer is not None:
            stop_group(peer)
        sim.stop()
