"""A real local mail setup for the inbound/outbound email tests: Debian's Dovecot (IMAP) started in a temp dir on a
free port as an unprivileged process, and aiosmtpd for SMTP. .ci/run installs ``dovecot-imapd``; without it these
tests fail with a message saying so (they are never skipped)."""
from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "support", "mail-test-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    host: str
    port: int
    user: str
    password: str

    def client(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4(self.host, self.port, timeout=10)
        c.login(self.user, self.password)
        return c

    def deliver(self, raw: bytes) -> None:
        """Put a message into INBOX, as the mail server's delivery agent would."""
        c = self.client()
        try:
            typ, data = c.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
            assert typ == "OK", data
        finally:
            c.logout()

    def mark_all_unseen(self) -> None:
        c = self.client()
        try:
            c.select("INBOX")
            c.store("1:*", "-FLAGS", "(\\Seen)")
        finally:
            c.logout()

    def flags(self) -> list[str]:
        c = self.client()
        try:
            c.select("INBOX")
            typ, data = c.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if d]
        finally:
            c.logout()


def _config(root: Path, port: int, uid: int, gid: int, user: str) -> str:
    import grp

    group = grp.getgrgid(gid).gr_name
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
first_valid_uid = 0
first_valid_gid = 0
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
"""


@pytest.fixture
def imap_server():
    if not os.path.exists(DOVECOT):
        pytest.fail("Dovecot is not installed: `apt-get install -y dovecot-imapd` (.ci/run does this) — the inbound email "
                    "tests need a real local IMAP server.", pytrace=False)
    # not under pytest's tmp dir: that is private to the test user, and the server runs as another one when we are root
    root = Path(tempfile.mkdtemp(prefix="crmkit-dovecot-"))
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # never run the server as root: drop to nobody for the whole process tree
        import pwd

        pw = pwd.getpwnam("nobody")
        uid, gid, user = pw.pw_uid, pw.pw_gid, "nobody"
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    else:
        import pwd

        uid, gid, user = os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (root / "dovecot.conf").write_text(_config(root, port, uid, gid, user))
    if os.geteuid() == 0:
        for p in [root, *root.rglob("*")]:
            shutil.chown(p, uid, gid)
    proc = subprocess.Popen([*prefix, DOVECOT, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                log = (root / "dovecot.log").read_text(errors="replace") if (root / "dovecot.log").exists() else ""
                proc.kill()
                shutil.rmtree(root, ignore_errors=True)
                pytest.fail(f"Dovecot did not start on port {port}: {out}\n{log}", pytrace=False)
            time.sleep(0.1)
    yield Mailbox("127.0.0.1", port, USER, PASSWORD)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()
