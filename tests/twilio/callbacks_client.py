"""A service's intercept and out-of-session callbacks, driven with the
official, unmodified `twilio` library (only the host changes) and answered
by a receiver here, which checks every request with the library's
`RequestValidator`.

Run by tests/twilio_proxy.rs against `simmask sim` + `simmask run`. Every
check is an assert; one JSON line of what it saw is printed when all hold.
"""

import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twilio.request_validator import RequestValidator

from appliance import (
    ACCOUNT, ADMIN, ALICE, AUTH_TOKEN, BOB, CAROL, DAVE, ERIN, PROXIES,
    client, control, messages, native, wait_for,
)


class Receiver(BaseHTTPRequestHandler):
    """The marketplace's endpoints. /intercept answers 403 to a message
    with "forbidden" in it; /oos answers Carol with the auto-create JSON
    that connects her to Dave, anyone else with TwiML."""

    received = []
    base = ""
    # Calls from this participant are refused.
    block_calls_from = None

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        params = dict(urllib.parse.parse_qsl(body))
        signature = self.headers.get("X-Twilio-Signature")
        Receiver.received.append((self.path, signature, params))
        valid = RequestValidator(AUTH_TOKEN).validate(Receiver.base + self.path, params, signature)
        if not valid:
            self.send_response(400)
            self.end_headers()
            return
        if self.path == "/intercept" and params.get("interactionType") == "voice":
            refuse = params.get("inboundParticipantSid") == Receiver.block_calls_from
            self.send_response(403 if refuse else 200)
            self.end_headers()
        elif self.path == "/intercept":
            data = json.loads(params.get("interactionData") or "{}")
            self.send_response(403 if "forbidden" in data.get("body", "") else 200)
            self.end_headers()
        elif self.path == "/oos" and params.get("From") == CAROL:
            answer = json.dumps(
                {"uniqueName": "helpdesk-carol", "participantIdentifier": DAVE, "ttl": 600}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        elif self.path == "/oos":
            answer = b"<Response><Message>Sorry</Message></Response>"
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        else:
            self.send_response(204)
            self.end_headers()

    def log_message(self, *args):
        pass


def at(path, **match):
    return [
        r
        for r in Receiver.received
        if r[0] == path and all(r[2].get(k) == v for k, v in match.items())
    ]


def native_session(label):
    listed = native("GET", "/api/v1/sessions?limit=50")["sessions"]
    return [s for s in listed if s.get("label") == label]


def main():
    proxy = client(ADMIN).proxy.v1
    validator = RequestValidator(AUTH_TOKEN)
    seen = {}

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{receiver.server_port}"
    Receiver.base = base
    service = proxy.services.create(
        unique_name="desk",
        callback_url=base + "/status",
        intercept_callback_url=base + "/intercept",
        out_of_session_callback_url=base + "/oos",
    )
    assert service.intercept_callback_url == base + "/intercept"
    assert service.out_of_session_callback_url == base + "/oos"
    for number in PROXIES:
        proxy.services(service.sid).phone_numbers.create(phone_number=number)
    sessions = proxy.services(service.sid).sessions

    # An ordinary message asks the intercept callback first, then goes.
    session = sessions.create(
        unique_name="order-9",
        participants=[json.dumps({"Identifier": ALICE}), json.dumps({"Identifier": BOB})],
    )
    parts = {p.identifier: p for p in sessions(session.sid).participants.list()}
    the_proxy = parts[ALICE].proxy_identifier
    control("POST", f"/handsets/{ALICE}/sms", {"to": the_proxy, "text": "hello Bob"})
    wait_for("Bob has it", lambda: messages(BOB))
    asked = wait_for("the intercept callback", lambda: at("/intercept"))[0]
    path, signature, params = asked
    assert validator.validate(base + "/intercept", params, signature), "signed as Twilio signs"
    assert params["interactionSessionSid"] == session.sid, params
    assert params["interactionType"] == "message"
    assert params["inboundParticipantSid"] == parts[ALICE].sid
    assert params["outboundParticipantSid"] == parts[BOB].sid
    assert json.loads(params["interactionData"]) == {"body": "hello Bob"}
    relayed = params["interactionSid"]
    status = wait_for("the status callback", lambda: at("/status", interactionSid=relayed))
    first_status = Receiver.received.index(status[0])
    assert Receiver.received.index(asked) < first_status, "intercept before status"

    # 403 blocks it: never sent, recorded blocked by `intercept_callback`.
    control("POST", f"/handsets/{ALICE}/sms", {"to": the_proxy, "text": "forbidden words"})
    blocked = wait_for(
        "the intercept callback for the second",
        lambda: [
            r
            for r in at("/intercept")
            if json.loads(r[2]["interactionData"]).get("body") == "forbidden words"
        ],
    )[0]
    blocked_sid = blocked[2]["interactionSid"]
    time.sleep(3)
    assert [m["text"] for m in messages(BOB)] == ["hello Bob"], messages(BOB)
    listed = sessions(session.sid).interactions(blocked_sid).fetch()
    assert listed.outbound_resource_status == "undelivered", listed.outbound_resource_status
    record = native_session("proxy desk: order-9")[0]
    natives = native("GET", f"/api/v1/sessions/{record['id']}/interactions")
    stopped = [i for i in natives if i.get("status") == "blocked"]
    assert len(stopped) == 1 and stopped[0]["rule"] == "intercept_callback", natives
    seen["blocked"] = len(stopped)

    # Calls ask too: a 403 refuses the call (the other side never rings),
    # anything else bridges it.
    Receiver.block_calls_from = parts[BOB].sid
    control("POST", f"/handsets/{BOB}/dial", {"to": the_proxy})
    refused_call = wait_for(
        "the intercept callback for Bob's call",
        lambda: at("/intercept", interactionType="voice", inboundParticipantSid=parts[BOB].sid),
    )[0]
    assert validator.validate(base + "/intercept", refused_call[2], refused_call[1])
    assert refused_call[2]["outboundParticipantSid"] == parts[ALICE].sid
    assert refused_call[2]["interactionSessionSid"] == session.sid
    wait_for(
        "Bob's call is refused",
        lambda: control("GET", f"/handsets/{BOB}/call")["state"] in ("idle", "ended"),
    )
    assert control("GET", f"/handsets/{ALICE}/call")["state"] in ("idle", "ended")
    control("POST", f"/handsets/{ALICE}/dial", {"to": the_proxy})
    wait_for("Bob rings", lambda: control("GET", f"/handsets/{BOB}/call")["state"] == "ringing")
    control("POST", f"/handsets/{BOB}/answer", {})
    wait_for(
        "they talk",
        lambda: control("GET", f"/handsets/{ALICE}/call").get("connected_to") == [BOB],
    )
    control("POST", f"/handsets/{ALICE}/hangup", {})
    wait_for(
        "Alice's call ended",
        lambda: control("GET", f"/handsets/{ALICE}/call")["state"] in ("idle", "ended"),
    )
    calls = wait_for(
        "both calls recorded",
        lambda: (lambda c: c if len(c) == 2 else None)(
            [i for i in native("GET", f"/api/v1/sessions/{record['id']}/interactions")
             if i.get("kind") == "call"]
        ),
    )
    refusal = [c for c in calls if "intercept_callback" in (c.get("reason") or "")]
    assert len(refusal) == 1, calls
    seen["calls_refused"] = len(refusal)

    # A stranger: the out-of-session callback's auto-create JSON opens a
    # session with Dave on the number Carol wrote to, and her message is
    # relayed in it as if it had been open.
    free = [p for p in PROXIES if p != the_proxy][0]
    control("POST", f"/handsets/{CAROL}/sms", {"to": free, "text": "I need help"})
    at_dave = wait_for("Dave has Carol's message", lambda: messages(DAVE))
    assert [(m["from"], m["text"]) for m in at_dave] == [(free, "I need help")], at_dave
    oos = at("/oos", From=CAROL)[0]
    assert validator.validate(base + "/oos", oos[2], oos[1])
    assert oos[2]["To"] == free and oos[2]["Body"] == "I need help", oos[2]
    assert oos[2]["AccountSid"] == ACCOUNT
    auto = sessions("helpdesk-carol").fetch()
    assert auto.ttl == 600 and auto.status in ("open", "in-progress"), (auto.ttl, auto.status)
    people = {p.identifier: p for p in sessions(auto.sid).participants.list()}
    assert set(people) == {CAROL, DAVE}, people
    assert people[DAVE].proxy_identifier == free
    interactions = wait_for("Carol's interaction", lambda: sessions(auto.sid).interactions.list())
    assert json.loads(interactions[0].data) == {"body": "I need help"}
    assert interactions[0].inbound_participant_sid == people[CAROL].sid
    # Dave answers through the proxy: the session works both ways.
    control("POST", f"/handsets/{DAVE}/sms", {"to": free, "text": "How can I help?"})
    wait_for("Carol has Dave's answer", lambda: messages(CAROL))
    assert [(m["from"], m["text"]) for m in messages(CAROL)] == [(free, "How can I help?")]

    # Anyone else gets TwiML, which the appliance does not run: the
    # out-of-session policy applies (here the default: not relayed).
    control("POST", f"/handsets/{ERIN}/sms", {"to": free, "text": "hi?"})
    wait_for("the callback for Erin", lambda: at("/oos", From=ERIN))
    time.sleep(2)
    assert [s.unique_name for s in sessions.list()].count("helpdesk-carol") == 1
    assert len(sessions.list()) == 2, [s.unique_name for s in sessions.list()]
    assert messages(DAVE) == at_dave and [m["text"] for m in messages(BOB)] == ["hello Bob"]

    # Removing the callbacks: messages go without asking.
    proxy.services(service.sid).update(intercept_callback_url="", out_of_session_callback_url="")
    assert proxy.services(service.sid).fetch().intercept_callback_url is None
    before = len(at("/intercept"))
    control("POST", f"/handsets/{BOB}/sms", {"to": the_proxy, "text": "forbidden no more"})
    wait_for("Alice has it", lambda: messages(ALICE))
    assert len(at("/intercept")) == before
    seen["intercepts"] = before
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(1)
