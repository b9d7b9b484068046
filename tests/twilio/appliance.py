"""What both facade scripts share: where the appliance and the simulator
are (from the environment tests/twilio_proxy.rs sets), the handsets'
numbers, the `twilio` client pointed at the appliance, and small helpers
for the simulator's control API and the appliance's native API.
"""

import json
import os
import time
import urllib.request

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

API = os.environ["SIMMASK_URL"]  # http://127.0.0.1:PORT
CONTROL = os.environ["SIM_CONTROL"]  # the simulator's control API
ACCOUNT = os.environ["TWILIO_ACCOUNT_SID"]
ADMIN = os.environ["ADMIN_TOKEN"]
PROXIES = json.loads(os.environ["PROXIES"])  # the bank's numbers, E.164
AUTH_TOKEN = os.environ["TWILIO_AUTH_TOKEN"]  # [twilio] auth_token: signs callbacks

ALICE, BOB = "+447911223344", "+447912334455"
CAROL, DAVE = "+447913445566", "+447914556677"
ERIN, FRANK = "+447915667788", "+447916778899"


class Appliance(TwilioHttpClient):
    """Sends what the library addresses to proxy.twilio.com to the appliance."""

    def request(self, method, url, *args, **kwargs):
        url = url.replace("https://proxy.twilio.com", API + "/twilio")
        return super().request(method, url, *args, **kwargs)


def client(token):
    return Client(ACCOUNT, token, http_client=Appliance())


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        CONTROL + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return json.loads(text) if text else None


def native(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        API + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + ADMIN},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def messages(number):
    return control("GET", f"/handsets/{number}/messages")


def wait_for(what, check, within=30):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)
