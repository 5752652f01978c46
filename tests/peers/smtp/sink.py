#!/usr/bin/env python3
"""An SMTP relay for textgate's mailer tests: aiosmtpd (a real SMTP server we did not write).

Prints `listening PORT`, then one JSON line per message it takes:
{"mail_from", "rcpt_tos", "from", "to", "subject", "body"}.
"""
import argparse
import asyncio
import email
import email.policy
import json
import sys

from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        line = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "body": body.get_content() if body is not None else "",
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    controller = Controller(Handler(), hostname="127.0.0.1", port=args.port)
    controller.start()
    sys.stdout.write(f"listening {args.port}\n")
    sys.stdout.flush()
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
