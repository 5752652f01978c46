#!/usr/bin/env python3
"""An SMTP client for textgate's e-mail tests, built on Python's smtplib and email packages
(a client we did not write). Reads one JSON request on stdin, prints one JSON answer.

Request: {"host", "port", "tls": bool, "cafile": path, "auth": {"user", "password", "mech"},
"from", "to": [...], "size": bool, "message": {...} or "raw": text}
Answer: {"ehlo": [code, text], "tls": [...], "auth": [...], "mail": [...], "rcpt": [[...]...],
"data": [...]} with the step that ended the session last; "error" if the client raised.
"""
import json
import smtplib
import ssl
import sys
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText


def build(m, sender, to):
    kind = m.get("kind", "plain")
    charset = m.get("charset", "utf-8")
    if kind == "plain":
        msg = MIMEText(m["text"], "plain", charset)
    elif kind == "html":
        msg = MIMEText(m["html"], "html", charset)
    elif kind == "alternative":
        msg = MIMEMultipart("alternative")
        msg.attach(MIMEText(m["text"], "plain", charset))
        msg.attach(MIMEText(m["html"], "html", charset))
    elif kind == "attachments":
        msg = MIMEMultipart("mixed")
        msg.attach(MIMEText(m["text"], "plain", charset))
        notes = MIMEText("ATTACHED NOTES, NOT FOR SMS", "plain", "utf-8")
        notes.add_header("Content-Disposition", "attachment", filename="notes.txt")
        msg.attach(notes)
        pdf = MIMEApplication(b"%PDF-1.4\n" + bytes(range(256)) * 8, "pdf")
        pdf.add_header("Content-Disposition", "attachment", filename="report.pdf")
        msg.attach(pdf)
    else:
        raise ValueError("unknown kind " + kind)
    msg["Subject"] = Header(m.get("subject", "test"), charset)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    return msg.as_bytes()


def step(out, name, fn):
    try:
        code, text = fn()
        out[name] = [code, text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)]
        return code
    except smtplib.SMTPResponseException as e:
        out[name] = [e.smtp_code, e.smtp_error.decode("utf-8", "replace")]
        return e.smtp_code


def main():
    req = json.load(sys.stdin)
    out = {}
    try:
        s = smtplib.SMTP(req["host"], req["port"], timeout=30)
        step(out, "ehlo", lambda: s.ehlo("client.test"))
        out["features"] = sorted(s.esmtp_features.keys())
        if req.get("tls"):
            ctx = ssl.create_default_context(cafile=req["cafile"])
            step(out, "tls", lambda: s.starttls(context=ctx))
            step(out, "ehlo2", lambda: s.ehlo("client.test"))
            out["features"] = sorted(s.esmtp_features.keys())
        auth = req.get("auth")
        if auth:
            mech = auth.get("mech", "PLAIN").upper()
            s.user, s.password = auth["user"], auth["password"]
            fn = s.auth_plain if mech == "PLAIN" else s.auth_login
            step(out, "auth", lambda: s.auth(mech, fn, initial_response_ok=auth.get("initial", True)))
            if out["auth"][0] != 235:
                s.quit()
                print(json.dumps(out))
                return
        opts = []
        if "raw" in req:
            body = req["raw"].encode("utf-8")
        else:
            body = build(req["message"], req["from"], req["to"])
        if req.get("size"):
            opts.append("SIZE=%d" % len(body))
        if step(out, "mail", lambda: s.mail(req["from"], opts)) != 250:
            s.quit()
            print(json.dumps(out))
            return
        out["rcpt"] = []
        ok = 0
        for r in req["to"]:
            try:
                code, text = s.rcpt(r)
            except smtplib.SMTPResponseException as e:
                code, text = e.smtp_code, e.smtp_error
            out["rcpt"].append([code, text.decode("utf-8", "replace")])
            ok += code in (250, 251)
        if ok:
            step(out, "data", lambda: s.data(body))
        s.quit()
    except Exception as e:  # the answer says what went wrong, the test decides
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))


main()
