"""An SMTP server with TLS and authentication for the notification tests (tests/tests/notify.rs).

Debian's aiosmtpd (python3-aiosmtpd) on 127.0.0.1:PORT, either plain SMTP that requires
STARTTLS (`starttls`) or TLS from the first byte (`tls`), with the given certificate. It
requires AUTH (PLAIN or LOGIN) as USER with PASSWORD, and only after TLS. Each accepted message
is written to DIR as <pid>-<n>.eml, preceded by lines saying how it arrived:

    X-Test-Tls: yes
    X-Test-Auth: <user>
    X-Test-Rcpt: <address>

Usage: tls_smtp_server.py PORT MODE CERT KEY USER PASSWORD DIR
"""

import asyncio
import itertools
import warnings
import os
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    # aiosmtpd sets its deprecated Session.login_data itself on every AUTH.
    warnings.simplefilter("ignore")
    port, mode, cert, key, user, password, out = sys.argv[1:8]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    counter = itertools.count(1)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            wrapped = server.transport.get_extra_info("ssl_object") is not None
            tls = "yes" if session.ssl is not None or wrapped else "no"
            who = session.auth_data if session.authenticated else None
            login = who.login.decode() if isinstance(who, LoginPassword) else ""
            lines = [f"X-Test-Tls: {tls}", f"X-Test-Auth: {login}"]
            lines += [f"X-Test-Rcpt: {r}" for r in envelope.rcpt_tos]
            path = os.path.join(out, f"{os.getpid()}-{next(counter)}.eml")
            with open(path + ".part", "wb") as f:
                f.write(("\r\n".join(lines) + "\r\n").encode())
                f.write(envelope.original_content or envelope.content)
            os.rename(path + ".part", path)
            return "250 OK"

    common = dict(
        hostname="127.0.0.1",
        port=int(port),
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    if mode == "starttls":
        controller = Controller(
            Handler(), tls_context=context, require_starttls=True, **common
        )
    elif mode == "tls":
        # TLS from the first byte: aiosmtpd's auth_require_tls only knows STARTTLS.
        common["auth_require_tls"] = False
        controller = Controller(Handler(), ssl_context=context, **common)
    else:
        sys.exit(f"unknown mode {mode!r}: starttls or tls")
    controller.start()
    print("ready", flush=True)
    done = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        done.add_signal_handler(sig, done.stop)
    done.run_forever()
    controller.stop()


if __name__ == "__main__":
    main()
