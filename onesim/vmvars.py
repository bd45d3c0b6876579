"""CONTEXT variables as oned expands them (VirtualMachine::parse_context_variables with the
vm_var lexer and grammar): the CONTEXT vector is joined into one string, "NAME=value" pairs
between "@^_^@" (VectorAttribute::marshall), every `$VAR`, `$VAR[ATTR]` and
`$VAR[ATTR, NAME="value"]` in it replaced, and the result split again (unmarshall). There is no
escape: `\\$` stops a variable but stays in the value with its backslash. A `$` not followed by
a name (`$ `, a lone `$NETWORK[`) is a syntax error, and oned refuses the VM.

Not emulated: `$TEMPLATE` (the VM's XML in base64: empty here), address-range attributes of a
`$NETWORK[…]` (the network's template only)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from . import errors
from . import template as T

if TYPE_CHECKING:
    from .core import Sim

SEP = "@^_^@"
_RSTRING = re.compile(r"(?:[^$\\]|\\\$|\\[^$])+", re.S)
# the lexer's rules after a `$`, in its order (the first of equally long matches wins)
_VAR_RULES = (
    ("EQUAL", re.compile(r"[ \t]*=[ \t]*")),
    ("COMMA", re.compile(r"[ \t]*,[ \t]*")),
    ("OBRACKET", re.compile(r"\[[ \t]*")),
    ("CBRACKET", re.compile(r"[ \t]*\]")),
    ("VARIABLE", re.compile(r"[A-Za-z0-9_]+")),
    ("EOA$", re.compile(r"\$")),  # ends the variable; another one follows
    ("EOA", re.compile(r".")),  # ends the variable; the character is kept
)
_VALUE_RULES = (re.compile(r'"([^"]*)"'), re.compile(r"([A-Za-z0-9]+)"))


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, value) as the vm_var lexer gives them; EOA's value: the character it ends on."""
    out: list[tuple[str, str]] = []
    pos, state = 0, "INITIAL"
    while pos < len(text):
        if state == "INITIAL":
            if text[pos] == "$":
                pos, state = pos + 1, "VAR"
                continue
            m = _RSTRING.match(text, pos)
            if m:
                out.append(("RSTRING", m.group()))
            pos = m.end() if m else pos + 1  # flex's default rule drops a lone trailing "\"
        elif state == "VAR":
            best = None
            for kind, rule in _VAR_RULES:
                m = rule.match(text, pos)
                if m and (best is None or len(m.group()) > len(best[1].group())):
                    best = (kind, m)
            if best is None:  # a newline: dropped
                pos += 1
                continue
            kind, m = best
            pos = m.end()
            if kind == "EOA$":
                out.append(("EOA", ""))
            elif kind == "EOA":
                out.append(("EOA", m.group()))
                state = "INITIAL"
            else:
                out.append((kind, m.group().strip(" \t[]")))
                state = "VALUE" if kind == "EQUAL" else "VAR"
        else:  # VALUE
            m = next((m for r in _VALUE_RULES if (m := r.match(text, pos))), None)
            if m:
                out.append(("STRING", m.group(1)))
                state = "VAR"
            pos = m.end() if m else pos + 1
    if state == "VAR":
        out.append(("EOA", ""))
    return out


class _Vars:
    """The values the variables of one VM stand for."""

    def __init__(self, sim: Sim, vm: dict):
        self.sim, self.vm = sim, vm

    def single(self, name: str) -> str:
        vm, sim = self.vm, self.sim
        known = {
            "UID": lambda: str(vm["uid"]),
            "UNAME": lambda: sim.uname(vm["uid"]),
            "GID": lambda: str(vm["gid"]),
            "GNAME": lambda: sim.gname(vm["gid"]),
            "NAME": lambda: vm["name"],
            "TEMPLATE": lambda: "",
        }
        if name in known:
            return known[name]()
        value = T.get(vm["template"], name)
        return value if value else T.get(vm["user_template"], name) or ""

    def vector(self, name: str, attr: str, key: str, wanted: str) -> str:
        vm, sim = self.vm, self.sim
        if name == "USER":
            user = sim.store.get("user", vm["uid"])
            return "" if user is None or attr == "TEMPLATE" else T.get(user["template"], attr) or ""
        if name in ("NETWORK", "IMAGE"):
            vec, keys, kind, ref = (
                ("NIC", ("NETWORK", "NETWORK_ID", "NIC_ID"), "vnet", "NETWORK_ID")
                if name == "NETWORK"
                else ("DISK", ("IMAGE", "IMAGE_ID"), "image", "IMAGE_ID")
            )
            if key not in keys or attr == "TEMPLATE":
                return ""
            for v in T.get_vec(vm["template"], vec):
                if T.vget(v, key) == wanted:
                    obj = sim.store.get(kind, int(T.vget(v, ref) or -1))
                    return T.get(obj["template"], attr) or "" if obj else ""
            return ""
        vecs = T.get_vec(vm["template"], name)
        if key:
            vecs = [v for v in vecs if T.vget(v, key) == wanted]
        return T.vget(vecs[0], attr) or "" if vecs else ""


def _syntax_error(text: str, got: str) -> errors.OneError:
    return errors.internal(f"Error parsing: {text}. syntax error, unexpected {got}")


def expand(sim: Sim, vm: dict, text: str) -> str:
    """`text` with its variables replaced for `vm` (a dict with uid, gid, name, template,
    user_template); OneError for what oned's grammar refuses."""
    values, out = _Vars(sim, vm), []
    tokens = _tokens(text) + [("END", "")]
    i = 0

    def take(*kinds: str) -> list[str]:
        nonlocal i
        got = []
        for kind in kinds:
            if tokens[i][0] != kind:
                raise _syntax_error(text, tokens[i][0])
            got.append(tokens[i][1])
            i += 1
        return got

    if tokens[0][0] == "END":
        raise _syntax_error(text, "end of file")
    while tokens[i][0] != "END":
        if tokens[i][0] == "RSTRING":
            out.append(take("RSTRING")[0])
            continue
        (name,) = take("VARIABLE")
        name = name.upper()
        if tokens[i][0] != "OBRACKET":
            out.append(values.single(name))
        else:
            (attr,) = take("OBRACKET", "VARIABLE")[1:]
            key = wanted = ""
            if tokens[i][0] == "COMMA":
                key, _, wanted = take("COMMA", "VARIABLE", "EQUAL", "STRING")[1:]
            take("CBRACKET")
            out.append(values.vector(name, attr.upper(), key.upper(), wanted))
        out.append(take("EOA")[0])
    return "".join(out)


def expand_context(sim: Sim, vm: dict, context: list) -> list:
    """A CONTEXT vector's pairs after oned's parse_context_variables."""
    text = SEP.join(f"{k}={v}" for k, v in context)
    out: list = []
    for piece in expand(sim, vm, text).split(SEP):
        name, eq, value = piece.partition("=")
        if eq and T.vget(out, name) is None:  # unmarshall keeps the first of a name
            out.append([name, value])
    return out
