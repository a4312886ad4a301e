"""Creates a user's account for AF Gateway (accounts.create), run as root through one sudo rule:

    af_gateway_accounts.py create NAME GROUP UID_MIN UID_MAX

Makes the POSIX account NAME (its own user group, a 0700 home, /bin/sh) as a member of GROUP with
a uid in UID_MIN..UID_MAX, and prints its passwd entry. An account that already exists is left as
it is and printed, if it is in GROUP and in the range; otherwise the answer is a refusal (exit 3).
Everything is checked here, not trusted from the caller: the name's form, the group's existence,
the range (never below 1000).
"""

import grp
import pwd
import re
import subprocess
import sys

NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?$")


def refuse(message, code=3):
    print(f"af_gateway_accounts: {message}", file=sys.stderr)
    sys.exit(code)


def entry(name):
    p = pwd.getpwnam(name)
    return f"{p.pw_name}:x:{p.pw_uid}:{p.pw_gid}::{p.pw_dir}:{p.pw_shell}"


def create(name, group, uid_min, uid_max):
    if not NAME.match(name):
        refuse(f"{name!r} is not a valid account name")
    try:
        g = grp.getgrnam(group)
    except KeyError:
        refuse(f"the group {group!r} does not exist")
    if not (1000 <= uid_min <= uid_max <= 2**31 - 2):
        refuse(f"the uid range {uid_min}..{uid_max} is not allowed (from 1000)")
    try:
        p = pwd.getpwnam(name)
    except KeyError:
        p = None
    if p is None:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", "--groups", group,
             "-K", f"UID_MIN={uid_min}", "-K", f"UID_MAX={uid_max}", "-K", "HOME_MODE=0700", name],
            check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        p = pwd.getpwnam(name)
    if not uid_min <= p.pw_uid <= uid_max:
        refuse(f"the account {name} exists with uid {p.pw_uid}, outside {uid_min}..{uid_max}")
    g = grp.getgrnam(group)  # again: useradd has just added the member
    if name not in g.gr_mem and p.pw_gid != g.gr_gid:
        refuse(f"the account {name} exists outside the group {group}")
    print(entry(name))


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "create":
        refuse("usage: af_gateway_accounts.py create NAME GROUP UID_MIN UID_MAX", 2)
    try:
        create(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    except ValueError:
        refuse("UID_MIN and UID_MAX are numbers", 2)
    except subprocess.CalledProcessError as exc:
        refuse(f"useradd failed with exit code {exc.returncode}", 4)
