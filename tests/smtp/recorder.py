#!/usr/bin/env python3
"""An SMTP server for siar's tests, built on aiosmtpd (not siar's code).

Usage: recorder.py OUT.jsonl FAULTS.json [PORT]

Records every accepted message as one JSON line in OUT.jsonl: the envelope sender, the
recipients, the client's address and port (which session it came in), and the message bytes
(base64). Answers as FAULTS.json says, re-read on every
command so a test can change it while the server runs:

    {"mail_421_first": N}     421 to the first N MAIL commands (then the client must reconnect)
    {"rcpt_451_first": N}     451 to the first N RCPT commands
    {"rcpt_550": ["a@b.id"]}  550 5.1.1 to RCPT for these addresses, always
    {"data_554": ["a@b.id"]}  554 5.7.1 after the data of a message to these addresses

With PIPELINING=1 in the environment, the server offers PIPELINING (RFC 2920; aiosmtpd reads
pipelined commands in order either way). With RECORD_DATA=0, only envelopes and the Message-ID
are recorded (for volume tests).

Prints "port N" on stdout once listening (PORT 0 or absent: any free port).
"""
import asyncio
import base64
import json
import os
import re
import sys

from aiosmtpd.smtp import SMTP


def message_id(content):
    """The Message-ID header of a message, or ""."""
    head = (content or b"").split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"(?im)^message-id:[ \t]*(<[^>\r\n]*>)", head)
    return m.group(1).decode("ascii", "replace") if m else ""


class Handler:
    def __init__(self, out_path, faults_path):
        self.out = open(out_path, "a", encoding="utf-8")
        self.faults_path = faults_path
        self.counts = {}
        self.keep_data = os.environ.get("RECORD_DATA", "1") != "0"
        self.pipelining = os.environ.get("PIPELINING", "0") == "1"

    def faults(self):
        try:
            with open(self.faults_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def bump(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.bump("mail") <= self.faults().get("mail_421_first", 0):
            return "421 4.3.2 Service not available, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        f = self.faults()
        if address.lower() in [a.lower() for a in f.get("rcpt_550", [])]:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if self.bump("rcpt") <= f.get("rcpt_451_first", 0):
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refused = [a.lower() for a in self.faults().get("data_554", [])]
        if any(r.lower() in refused for r in envelope.rcpt_tos):
            return "554 5.7.1 Message content rejected"
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "session": "%s:%s" % tuple(session.peer[:2]),
            "message_id": message_id(envelope.original_content),
            "data": base64.b64encode(envelope.original_content or b"").decode("ascii")
            if self.keep_data
            else "",
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        return "250 2.0.0 Ok: queued"


async def main():
    out_path, faults_path = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    handler = Handler(out_path, faults_path)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=True, hostname="recorder.test"),
        "127.0.0.1",
        port,
        reuse_address=True,
    )
    print("port %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
