"""oned error codes and the failure messages of ``Request::failure_message``."""

from __future__ import annotations

SUCCESS = 0x0
AUTHENTICATION = 0x100
AUTHORIZATION = 0x200
NO_EXISTS = 0x400
ACTION = 0x800
RPC_API = 0x1000
INTERNAL = 0x2000
ALLOCATE = 0x4000
LOCKED = 0x8000

# object kind -> (name used in NO_EXISTS/ALLOCATE messages, name used in AUTHORIZATION messages)
NAMES = {
    "vm": ("virtual machine", "VM"),
    "vnet": ("virtual network", "NET"),
    "image": ("image", "IMAGE"),
    "user": ("user", "USER"),
    "template": ("virtual machine template", "TEMPLATE"),
    "datastore": ("datastore", "DATASTORE"),
    "group": ("group", "GROUP"),
    "host": ("host", "HOST"),
    "secgroup": ("security group", "SECGROUP"),
}


class OneError(Exception):
    """A failure answered as ``[false, "[method] msg", code, resp_id, -1]``."""

    def __init__(self, code: int, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resp_id = resp_id


def auth_failed() -> OneError:
    return OneError(AUTHENTICATION, "User couldn't be authenticated, aborting call.")


def no_exists(kind: str, oid: int) -> OneError:
    return OneError(NO_EXISTS, f"Error getting {NAMES[kind][0]} [{oid}].", oid)


def not_authorized(uid: int, op: str, kind: str, oid: int) -> OneError:
    return OneError(
        AUTHORIZATION, f"User [{uid}] : Not authorized to perform {op} {NAMES[kind][1]} [{oid}]."
    )


def not_authorized_create(uid: int, kind: str) -> OneError:
    return OneError(
        AUTHORIZATION, f"User [{uid}] : Not authorized to perform CREATE {NAMES[kind][1]}."
    )


def allocate_error(kind: str, detail: str) -> OneError:
    return OneError(ALLOCATE, f"Error allocating a new {NAMES[kind][0]}. {detail}")


def internal(msg: str) -> OneError:
    return OneError(INTERNAL, msg)


def action(msg: str) -> OneError:
    return OneError(ACTION, msg)


def api(msg: str) -> OneError:
    return OneError(RPC_API, msg)
