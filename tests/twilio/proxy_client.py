"""Drives the appliance's Twilio Proxy facade with the official, unmodified
`twilio` library: only the host changes, through a custom HTTP client.

Run by tests/twilio_proxy.rs against `simmask sim` + `simmask run`; the
environment says where they are. Every check is an assert: the script
exits non-zero with the traceback at the first that fails, and prints one
JSON line of what it saw when all hold.
"""

import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from appliance import (
    ACCOUNT, ADMIN, ALICE, API, AUTH_TOKEN, BOB, CAROL, DAVE, ERIN, FRANK, PROXIES,
    Appliance, client, control, messages, native, wait_for,
)

VIEWER = os.environ["VIEWER_TOKEN"]


class Receiver(BaseHTTPRequestHandler):
    """The marketplace's callback endpoint: keeps what it is sent."""

    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        Receiver.received.append(
            (self.path, self.headers.get("X-Twilio-Signature"), dict(urllib.parse.parse_qsl(body)))
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_messages(number, count):
    return wait_for(
        f"{number} has {count} messages",
        lambda: (lambda m: m if len(m) >= count else None)(messages(number)),
    )


def refused(call, status, code=None):
    try:
        call()
    except TwilioRestException as error:
        assert error.status == status, (error.status, error.code, error.msg)
        if code is not None:
            assert error.code == code, (error.status, error.code, error.msg)
        return error
    raise AssertionError(f"expected a {status}")


def main():
    twilio = client(ADMIN)
    proxy = twilio.proxy.v1
    seen = {}

    # A service, and the bank's numbers in its pool: the last one reserved.
    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    callback_url = f"http://127.0.0.1:{receiver.server_port}/proxy/status"
    service = proxy.services.create(
        unique_name="market", default_ttl=3600, callback_url=callback_url
    )
    assert service.callback_url == callback_url
    assert service.sid.startswith("KS") and len(service.sid) == 34, service.sid
    assert service.account_sid == ACCOUNT
    assert service.default_ttl == 3600
    assert service.number_selection_behavior == "prefer-sticky"
    assert service.url.startswith(API + "/twilio/v1/Services/"), service.url
    for number in PROXIES[:-1]:
        added = proxy.services(service.sid).phone_numbers.create(phone_number=number)
        assert added.sid.startswith("PN") and len(added.sid) == 34
        assert added.phone_number == number and added.is_reserved is False
    reserved = proxy.services(service.sid).phone_numbers.create(
        phone_number=PROXIES[-1], is_reserved=True
    )
    assert reserved.is_reserved is True
    pool = proxy.services(service.sid).phone_numbers.list()
    assert sorted(n.phone_number for n in pool) == sorted(PROXIES), pool
    assert all(n.capabilities["sms_outbound"] for n in pool)
    assert proxy.services("market").fetch().sid == service.sid, "by unique name"

    # A session, then its participants one at a time.
    sessions = proxy.services(service.sid).sessions
    session = sessions.create(unique_name="order-1", mode="voice-and-message")
    assert session.sid.startswith("KC") and session.status == "open", session.status
    assert session.ttl == 3600, "the service's default TTL"
    participants = sessions(session.sid).participants
    alice = participants.create(identifier=ALICE, friendly_name="Alice")
    assert alice.sid.startswith("KP") and alice.identifier == ALICE
    assert alice.proxy_identifier is None, "known once the second participant is"
    bob = participants.create(identifier=BOB, friendly_name="Bob")
    the_proxy = bob.proxy_identifier
    assert the_proxy in PROXIES[:-1], (the_proxy, "a reserved number is not handed out")
    assert bob.proxy_identifier_sid.startswith("PN")
    alice = participants(alice.sid).fetch()
    assert alice.proxy_identifier == the_proxy and alice.friendly_name == "Alice"
    assert len(participants.list()) == 2
    assert sessions("order-1").fetch().sid == session.sid, "by unique name"

    # A handset texts its proxy: the other receives it from the proxy, and
    # the session shows the message interaction.
    control("POST", f"/handsets/{ALICE}/sms", {"to": the_proxy, "text": "Is it still for sale?"})
    at_bob = wait_messages(BOB, 1)
    assert [(m["from"], m["text"]) for m in at_bob] == [(the_proxy, "Is it still for sale?")]
    interactions = sessions(session.sid).interactions
    first = wait_for("an interaction", lambda: interactions.list())
    assert len(first) == 1, first
    relayed = first[0]
    assert relayed.sid.startswith("KI") and relayed.type == "message"
    assert json.loads(relayed.data) == {"body": "Is it still for sale?"}
    assert relayed.inbound_participant_sid == alice.sid
    assert relayed.outbound_participant_sid == bob.sid
    assert relayed.inbound_resource_status == "received"
    assert interactions(relayed.sid).fetch().sid == relayed.sid
    assert sessions(session.sid).fetch().status == "in-progress"

    # The service's callback URL hears of it, signed as Twilio signs.
    validator = RequestValidator(AUTH_TOKEN)
    callback = wait_for(
        "a callback for the relayed message",
        lambda: [r for r in Receiver.received if r[2].get("interactionSid") == relayed.sid],
    )[0]
    path, signature, params = callback
    assert path == "/proxy/status"
    assert params["interactionType"] == "message", params
    assert params["interactionSessionSid"] == session.sid
    assert params["interactionServiceSid"] == service.sid
    assert params["interactionAccountSid"] == ACCOUNT
    assert params["inboundParticipantSid"] == alice.sid
    assert params["outboundParticipantSid"] == bob.sid
    assert json.loads(params["interactionData"]) == {"body": "Is it still for sale?"}
    assert validator.validate(callback_url, params, signature), "RequestValidator accepts it"
    tampered = dict(params, interactionData='{"body": "forged"}')
    assert not validator.validate(callback_url, tampered, signature)
    assert not RequestValidator("another token").validate(callback_url, params, signature)
    seen["callbacks"] = len(Receiver.received)

    # The proxy itself texts a participant.
    sent = participants(alice.sid).message_interactions.create(body="Your order is confirmed")
    assert sent.sid.startswith("KI") and sent.participant_sid == alice.sid
    assert sent.outbound_participant_sid == alice.sid and sent.inbound_participant_sid is None
    at_alice = wait_messages(ALICE, 1)
    assert [(m["from"], m["text"]) for m in at_alice] == [(the_proxy, "Your order is confirmed")]
    listed = participants(alice.sid).message_interactions.list()
    assert [m.sid for m in listed] == [sent.sid], listed
    assert participants(alice.sid).message_interactions(sent.sid).fetch().sid == sent.sid

    # More than one page: the library follows next_page_url.
    for n in range(3):
        participants(bob.sid).message_interactions.create(body=f"update {n}")
    wait_messages(BOB, 4)
    page = interactions.page(page_size=2)
    assert len(list(page)) == 2
    assert page.next_page_url and page.next_page_url.startswith(API + "/twilio/v1/"), page.next_page_url
    every = interactions.list(page_size=2)
    assert len(every) == 5, [i.sid for i in every]
    assert len({i.sid for i in every}) == 5, "pages do not overlap"
    seen["interactions"] = len(every)

    # A masked call: Bob calls the proxy, Alice answers, they hang up.
    control("POST", f"/handsets/{BOB}/dial", {"to": the_proxy})
    wait_for("Alice rings", lambda: control("GET", f"/handsets/{ALICE}/call")["state"] == "ringing")
    control("POST", f"/handsets/{ALICE}/answer", {})
    wait_for(
        "they talk",
        lambda: control("GET", f"/handsets/{BOB}/call").get("connected_to") == [ALICE],
    )
    control("POST", f"/handsets/{BOB}/hangup", {})
    voice = wait_for(
        "a voice interaction that ended",
        lambda: [
            i
            for i in interactions.list()
            if i.type == "voice" and i.outbound_resource_status not in ("ringing", "in-progress")
        ],
    )[0]
    assert voice.inbound_participant_sid == bob.sid and voice.outbound_participant_sid == alice.sid
    assert voice.outbound_resource_status == "completed", voice.outbound_resource_status
    voice_callback = wait_for(
        "a callback for the call",
        lambda: [
            r
            for r in Receiver.received
            if r[2].get("interactionSid") == voice.sid
            and r[2].get("outboundResourceStatus") == "completed"
        ],
    )[0]
    assert voice_callback[2]["interactionType"] == "voice"
    assert validator.validate(callback_url, voice_callback[2], voice_callback[1])

    # A session with both participants given at creation; then the pool's
    # other unreserved number, and the reserved one only when asked for.
    second = sessions.create(
        unique_name="order-2",
        mode="message-only",
        participants=[
            json.dumps({"Identifier": ALICE, "FriendlyName": "Alice"}),
            json.dumps({"Identifier": CAROL}),
        ],
    )
    second_parts = sessions(second.sid).participants.list()
    assert len(second_parts) == 2
    second_proxy = second_parts[0].proxy_identifier
    assert second_proxy in PROXIES[:-1] and second_proxy != the_proxy, "Alice is busy on the first"
    refused(
        lambda: sessions.create(
            participants=[json.dumps({"Identifier": ALICE}), json.dumps({"Identifier": DAVE})]
        ),
        400,
        80402,
    )
    third = sessions.create(
        participants=[
            json.dumps({"Identifier": ALICE, "ProxyIdentifier": PROXIES[-1]}),
            json.dumps({"Identifier": DAVE}),
        ]
    )
    third_parts = sessions(third.sid).participants.list()
    assert {p.proxy_identifier for p in third_parts} == {PROXIES[-1]}
    in_use = {n.phone_number: n.in_use for n in proxy.services(service.sid).phone_numbers.list()}
    assert in_use[PROXIES[-1]] == 1 and in_use[the_proxy] == 1, in_use

    # A session opened through the native API on the service's numbers is
    # the service's too, and closable through the facade.
    opened = native("POST", "/api/v1/sessions", {"participants": [ERIN, FRANK]})
    listed_sessions = {s.sid: s for s in sessions.list()}
    assert len(listed_sessions) == 4, list(listed_sessions)
    natives = [s for s in listed_sessions.values() if s.unique_name is None and s.sid not in (third.sid,)]
    assert len(natives) == 1, natives
    sessions(natives[0].sid).update(status="closed")
    assert native("GET", f"/api/v1/sessions/{opened['id']}")["status"] == "closed"

    # A viewer token reads, masked, and may not write.
    viewer = client(VIEWER).proxy.v1.services(service.sid)
    masked = viewer.sessions(session.sid).participants(alice.sid).fetch()
    assert masked.identifier != ALICE and "*" in masked.identifier, masked.identifier
    assert json.loads(viewer.sessions(session.sid).interactions(relayed.sid).fetch().data) == {}
    refused(lambda: viewer.sessions.create(unique_name="nope"), 403, 20403)

    # Errors as Twilio's.
    refused(lambda: client("smk_wrong").proxy.v1.services(service.sid).fetch(), 401, 20003)
    stranger = Client("AC" + "0" * 32, ADMIN, http_client=Appliance())
    refused(lambda: stranger.proxy.v1.services(service.sid).fetch(), 401, 20003)
    refused(lambda: sessions("KC" + "f" * 32).fetch(), 404, 20404)
    refused(lambda: participants.create(identifier=CAROL), 400, 80609)
    refused(lambda: sessions.create(mode="video"), 400, 20001)
    refused(lambda: participants.create(identifier="not a number"), 400)
    refused(lambda: proxy.services.create(unique_name="market"), 409)
    refused(
        lambda: proxy.services(service.sid).update(intercept_callback_url="ftp://127.0.0.1/x"),
        400,
        20001,
    )

    # Closing stops relaying.
    closed = sessions(session.sid).update(status="closed")
    assert closed.status == "closed" and closed.closed_reason == "operator", closed.closed_reason
    before = len(messages(BOB))
    control("POST", f"/handsets/{ALICE}/sms", {"to": the_proxy, "text": "are you there?"})
    time.sleep(3)
    assert len(messages(BOB)) == before, "nothing relayed once closed"
    refused(
        lambda: participants(alice.sid).message_interactions.create(body="late"), 400, 80603
    )
    reopened = sessions(session.sid).update(status="in-progress")
    assert reopened.status in ("open", "in-progress"), reopened.status

    sessions(second.sid).delete()
    refused(lambda: sessions(second.sid).fetch(), 404, 20404)
    seen["sessions"] = len(sessions.list())
    seen["proxy"] = the_proxy
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(1)
