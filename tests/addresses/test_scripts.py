"""The elastic-IP script runner: no shell, no stdin, fixed leading arguments, timeouts, messages."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from econe.config import script_is_set
from handlers.scripts import ScriptError, command, run_script, script_env, tidy
from tests.addresses.conftest import script

ECHO = (
    "json.dump({'argv': sys.argv[1:], 'stdin': sys.stdin.read()}, open(os.environ['OUT'], 'w'))\n"
)


def test_arguments_reach_the_script_verbatim_without_a_shell(tmp_path: Path) -> None:
    spaced = tmp_path / "dir with space"
    spaced.mkdir()
    path = script(spaced, "echo", ECHO)
    out = tmp_path / "out.json"
    nasty = ["$(touch pwned)", "; rm -rf /", "`id`", "a b", "'\"", "*", "-x"]
    run_script(f"'{path}' fixed --flag", nasty, timeout=10, env={"OUT": str(out)})
    seen = json.loads(out.read_text())
    assert seen == {"argv": ["fixed", "--flag", *nasty], "stdin": ""}
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_failures_carry_the_scripts_message(tmp_path: Path) -> None:
    both = script(
        tmp_path,
        "both",
        "print('on stdout')\nprint('on\\x1b[31m stderr\\n  twice', file=sys.stderr)\nsys.exit(3)\n",
    )
    with pytest.raises(ScriptError) as err:
        run_script(str(both), [], timeout=10, name="associate script")
    assert err.value.message == "the associate script failed (exit status 3): on[31m stderr twice"
    assert err.value.returncode == 3
    only_out = script(tmp_path, "out", "print('x' * 2000)\nsys.exit(1)\n")
    with pytest.raises(ScriptError) as err:
        run_script(str(only_out), [], timeout=10)
    assert err.value.message.endswith("x…") and len(err.value.message) < 600
    silent = script(tmp_path, "silent", "sys.exit(4)\n")
    with pytest.raises(ScriptError, match=r"failed \(exit status 4\)$"):
        run_script(str(silent), [], timeout=10)


def test_missing_unrunnable_and_empty(tmp_path: Path) -> None:
    # gone or not executable since the start checked it: the path only in the log
    for program in (tmp_path / "nope", tmp_path / "plain"):
        (tmp_path / "plain").write_text("#!/bin/sh\n")
        with pytest.raises(ScriptError) as err:
            run_script(str(program), ["1.2.3.4"], timeout=5, name="associate script")
        assert err.value.message == "the associate script cannot be run"
    with pytest.raises(ScriptError, match="no script is configured"):
        run_script("  ", [], timeout=5)
    with pytest.raises(ScriptError, match="cannot be parsed"):
        command("'unbalanced", [])
    assert not script_is_set("false") and not script_is_set("/usr/bin/false")
    assert not script_is_set("") and script_is_set("/usr/lib/econe/iptables-associate")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    child = f"import time; time.sleep(0.9); open({str(marker)!r}, 'w')"
    sleeper = script(
        tmp_path,
        "sleeper",
        "import subprocess, time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "print('started', file=sys.stderr, flush=True)\n"
        "time.sleep(30)\n",
    )
    began = time.monotonic()
    with pytest.raises(ScriptError) as err:
        run_script(str(sleeper), [], timeout=0.5, name="disassociate script")
    assert time.monotonic() - began < 5
    assert "did not finish within 0.5 seconds: started" in err.value.message
    time.sleep(1.2)
    assert not marker.exists()


def test_refuses_to_block_the_event_loop(tmp_path: Path) -> None:
    ok = script(tmp_path, "ok", "")

    async def on_loop() -> None:
        run_script(str(ok), [], timeout=5)

    with pytest.raises(RuntimeError, match="worker thread"):
        asyncio.run(on_loop())

    async def in_thread() -> None:
        await asyncio.to_thread(run_script, str(ok), [], 5)

    asyncio.run(in_thread())


def test_tidy() -> None:
    assert tidy("  a\n\tb\x00c  ") == "a bc"
    assert tidy("y" * 10, limit=5) == "yyyy…"
    assert sys.executable  # scripts in these tests run with this interpreter


def test_scripts_get_a_minimal_environment(monkeypatch):
    monkeypatch.setenv("ONE_CIPHER_AUTH", "/var/lib/one/.one/ec2_auth")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    monkeypatch.setenv("ECONE_EIP_LOG", "/tmp/calls.jsonl")
    monkeypatch.setenv("IPTABLES", "/usr/sbin/iptables-legacy")
    monkeypatch.setenv("TMPDIR", "/elsewhere")
    monkeypatch.delenv("TZ", raising=False)
    env = script_env("/var/tmp/econe")
    assert env["TMPDIR"] == "/var/tmp/econe" and env["ECONE_EIP_LOG"] == "/tmp/calls.jsonl"
    assert env["IPTABLES"] == "/usr/sbin/iptables-legacy" and env["PATH"]
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "IPTABLES", "TMPDIR"}
    assert {k for k in env if not k.startswith(("EIP_", "ECONE_EIP_"))} <= allowed
    assert "TZ" not in env  # only what the server has


def test_a_script_sees_only_the_minimal_environment(tmp_path: Path, monkeypatch) -> None:
    """What the script itself finds in os.environ, run as the handlers run it (no `env`)."""
    monkeypatch.setenv("ONE_CIPHER_AUTH", "/var/lib/one/.one/ec2_auth")
    monkeypatch.setenv("ECONE_EIP_OUT", str(tmp_path / "env.json"))
    dump = script(
        tmp_path, "env", "json.dump(dict(os.environ), open(os.environ['ECONE_EIP_OUT'], 'w'))\n"
    )
    run_script(str(dump), [], timeout=10)
    seen = json.loads((tmp_path / "env.json").read_text())
    assert "ONE_CIPHER_AUTH" not in seen and seen["ECONE_EIP_OUT"] == str(tmp_path / "env.json")


# -- the shipped iptables-disassociate, with a fake iptables ($IPTABLES) ---------------------

SHIPPED = Path(__file__).resolve().parents[2] / "econe" / "scripts"
LISTING = """Chain {chain} (policy ACCEPT)
num  target     prot opt source               destination
1    DNAT       all  --  0.0.0.0/0            198.51.100.1  /* econe-eip:198.51.100.1 */ to:10.0.0.5
2    DNAT       all  --  0.0.0.0/0            198.51.100.10 /* econe-eip:198.51.100.10 */ to:10.0.0.6
3    DNAT       all  --  0.0.0.0/0            198.51.100.1  /* econe-eip:198.51.100.1 */ to:10.0.0.7
"""


def fake_iptables(tmp_path: Path, monkeypatch, fail: str = "") -> Path:
    """A fake iptables: `-L` prints LISTING, `-D` is noted in a log; `fail` ("-L" or "-D")
    makes that one fail as iptables does without root."""
    log = tmp_path / "iptables.log"
    listing = tmp_path / "listing"
    listing.write_text(LISTING)
    path = tmp_path / "fake-iptables"
    path.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" {fail} "*) [ -n "{fail}" ] &&'
        " { echo \"iptables v1.8.9: can't initialize iptables table 'nat': Permission denied"
        ' (you must be root)" >&2; exit 4; } ;; esac\n'
        'case " $* " in\n'
        f'  *" -L "*) chain=$5; sed "s/{{chain}}/$chain/" {listing} ;;\n'
        f'  *" -D "*) echo "$*" >> {log} ;;\n'
        "esac\n"
    )
    path.chmod(0o755)
    monkeypatch.setenv("IPTABLES", str(path))
    return log


def test_iptables_disassociate_deletes_the_addresses_rules_highest_first(
    tmp_path: Path, monkeypatch
) -> None:
    log = fake_iptables(tmp_path, monkeypatch)
    run_script(str(SHIPPED / "iptables-disassociate"), ["198.51.100.1"], timeout=10)
    assert log.read_text().splitlines() == [
        f"-w -t nat -D {chain} {num}"
        for chain in ("PREROUTING", "OUTPUT", "POSTROUTING")
        for num in (3, 1)  # not rule 2, 198.51.100.10's
    ]


@pytest.mark.parametrize("fail", ["-L", "-D"])
def test_iptables_disassociate_fails_when_iptables_fails(
    tmp_path: Path, monkeypatch, fail: str
) -> None:
    """Listing or deleting fails (not root, no nat table): the script fails with iptables'
    message, so econe keeps the address associated and tells the user why. The listing's
    failure was lost in a pipeline: the script said success with every rule in place."""
    fake_iptables(tmp_path, monkeypatch, fail)
    with pytest.raises(ScriptError) as err:
        run_script(
            str(SHIPPED / "iptables-disassociate"),
            ["198.51.100.1"],
            timeout=10,
            name="disassociate script",
        )
    assert err.value.message == (
        "the disassociate script failed (exit status 4): iptables v1.8.9: can't initialize"
        " iptables table 'nat': Permission denied (you must be root)"
    )
