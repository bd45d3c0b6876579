"""`econe`: the EC2 client command line for econe (the Ruby `econe-*` tools as subcommands).

Entry points: :func:`main` (``econe``) and one function per old tool name (``econe-upload``,
``econe-describe-images``, …), each running the matching subcommand.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from econe.admin_keys import add_admin_parser
from econe.client import version
from econe.client.base import seconds
from econe.client.commands import BY_NAME, COMMANDS
from econe.client.credentials import DEFAULT_REGION, DEFAULT_URL, CredentialsError, resolve
from econe.client.errors import EXIT_USAGE, CliError, ServerError
from econe.client.session import Context, Options

EPILOG = f"""\
credentials (first found wins, for each of access key, secret key and URL):
  1. -K/--access-key, -S/--secret-key, -U/--url
  2. EC2_ACCESS_KEY, EC2_SECRET_KEY, EC2_URL
  3. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_EC2 (then AWS_ENDPOINT_URL)
  4. if no secret key was given: the file $ONE_AUTH (default ~/.one/one_auth) holding
     user:password; access key = user, secret key = SHA-256 hex of the password, as
     OpenNebula >= 5.10 stores it (--sha1-secret: SHA-1 hex, for OpenNebula <= 5.8).
     An access key given by 1-3 must then name the same user.
  The URL defaults to {DEFAULT_URL}; the region is {DEFAULT_REGION!r}.

exit codes:
  0  success
  1  the endpoint answered with an EC2 error, printed as 'econe: <Code>: <Message>'; with
     --wait also a resource that ended elsewhere (an instance terminated, an image failed)
  2  usage error: bad arguments, missing credentials, unreadable file
  3  the endpoint is unreachable (connection refused, DNS, TLS, timeout)
  4  --wait gave up: the resources did not reach the state within --wait-timeout
"""


def _global_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand (defaults applied later)."""
    g = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g.add_argument("-K", "--access-key", help="EC2 access key (OpenNebula user name)")
    g.add_argument("-S", "--secret-key", help="EC2 secret key (the password hash oned stores)")
    g.add_argument("-U", "--url", help=f"endpoint URL (default {DEFAULT_URL})")
    g.add_argument(
        "--sha1-secret",
        action="store_true",
        help="derive the secret from ONE_AUTH with SHA-1 (OpenNebula <= 5.8)",
    )
    g.add_argument(
        "--plain-secret",
        action="store_true",
        help="use the ONE_AUTH password itself as the secret (users of OpenNebula's public "
        "driver, whose password oned keeps as given)",
    )
    g.add_argument("--region", help=f"region name to sign with (default {DEFAULT_REGION})")
    g.add_argument("--json", action="store_true", help="print the response as JSON")
    g.add_argument("--no-headers", action="store_true", help="print tables without headers")
    g.add_argument(
        "-H",
        "--headers",
        action="store_true",
        help="accepted for compatibility with the Ruby tools (headers are the default)",
    )
    g.add_argument("-v", "--verbose", action="store_true", help="show endpoint and request ids")
    g.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="per-request timeout (default 60; for upload 300, its answer comes once the file "
        "is stored)",
    )
    g.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help="retry failed requests N times (default 0: mutating calls are not repeated)",
    )
    g.add_argument(
        "--no-verify-ssl", action="store_true", help="do not verify the endpoint's certificate"
    )
    g.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="PEM file of the CA(s) to verify the endpoint's certificate with, such as a private "
        "CA's (default $AWS_CA_BUNDLE, else the certifi bundle boto3 uses)",
    )
    g.add_argument("-V", "--version", action="version", version=f"econe {version()}")
    return g


def build_parser(legacy: str | None = None) -> argparse.ArgumentParser:
    """The parser; `legacy`: the subcommand run as its Ruby-style alias (`econe-<name>`), whose
    usage and errors name it so."""
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog="econe",
        description="EC2 client for econe, the EC2 Query API server for OpenNebula.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(
            command.name,
            prog=f"econe-{command.name}" if command.name == legacy else None,
            help=command.help,
            description=f"{command.help}\n\n{command.details}" if command.details else command.help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        command.configure(p)
        p.set_defaults(command_parser=p)  # reports arguments it does not know (see main)
    add_admin_parser(sub)  # `econe admin-keys …`: per-user EC2 keys, talks to oned directly
    return parser


def _options(args: argparse.Namespace, env: Mapping[str, str]) -> Options:
    get = args.__dict__.get
    return Options(
        region=get("region") or DEFAULT_REGION,
        json=bool(get("json")),
        headers=not get("no_headers"),
        verbose=bool(get("verbose")),
        timeout=get("timeout"),
        retries=get("retries") or 0,
        verify_ssl=not get("no_verify_ssl")
        and (get("ca_bundle") or env.get("AWS_CA_BUNDLE") or True),
    )


def _unusable_bundle(path: str) -> str | None:
    """Why `path` cannot serve as a CA bundle, else None."""
    import ssl

    if not os.path.isfile(path):
        return "is not a file"
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"holds no PEM certificate ({getattr(exc, 'reason', None) or exc})"
    return None


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    env: dict[str, str] | None = None,
    legacy: str | None = None,
) -> int:
    if out is None and sys.stdout.errors == "strict":
        # text the locale cannot encode (an AMI named 'débian' under PYTHONIOENCODING=ascii) is
        # printed escaped, d\xe9bian, as Python does on stderr, rather than failing the command
        sys.stdout.reconfigure(errors="backslashreplace")
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser(legacy)
    try:
        args, unknown = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        if unknown:  # said by the subcommand (argparse lets the top parser say it, as `econe`)
            command_parser = getattr(args, "command_parser", parser)
            command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # --help, --version, usage errors (argparse prints them)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "admin-keys":  # needs oneadmin credentials, not EC2 ones
        return args.admin_keys_func(args, out=out, err=err, env=os.environ if env is None else env)
    options = _options(args, os.environ if env is None else env)
    verbose = options.verbose
    bundle = options.verify_ssl
    if isinstance(bundle, str):
        problem = _unusable_bundle(bundle)
        if problem:
            err.write(f"econe: CA bundle {bundle} (--ca-bundle or AWS_CA_BUNDLE) {problem}\n")
            return EXIT_USAGE
    try:
        creds = resolve(
            args.__dict__.get("access_key"),
            args.__dict__.get("secret_key"),
            args.__dict__.get("url"),
            sha1_secret=bool(args.__dict__.get("sha1_secret")),
            plain_secret=bool(args.__dict__.get("plain_secret")),
            env=os.environ if env is None else env,
        )
        ctx = Context(creds, options, out=out, err=err)
        BY_NAME[args.command].run(ctx, args)
        out.flush()
    except CredentialsError as exc:
        err.write(f"econe: {exc}\n")
        return EXIT_USAGE
    except CliError as exc:
        err.write(f"econe: {exc.message}\n")
        if verbose and isinstance(exc, ServerError) and exc.request_id:
            err.write(f"econe: request id {exc.request_id}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("econe: interrupted\n")
        return 130
    except UnicodeEncodeError:  # an argument the terminal gave as bytes that are no text
        # (not the output: Context.write reports that)
        err.write("econe: an argument is not valid text in the locale's encoding\n")
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `econe describe-images | head -1`
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as exc:  # noqa: BLE001 - last resort: report, never a bare traceback
        err.write(f"econe: internal error: {type(exc).__name__}: {exc}\n")
        if verbose:
            traceback.print_exc(file=err)
        else:
            err.write("econe: run with -v for the traceback\n")
        return 1
    return 0


def _alias(command: str) -> Callable[[], int]:
    def run() -> int:
        return main([command, *sys.argv[1:]], legacy=command)

    run.__name__ = command.replace("-", "_")
    run.__doc__ = f"`econe-{command}`: the same as `econe {command}`."
    return run


# One console script per Ruby tool name (see [project.scripts] in pyproject.toml).
upload = _alias("upload")
register = _alias("register")
describe_images = _alias("describe-images")
run_instances = _alias("run-instances")
describe_instances = _alias("describe-instances")
terminate_instances = _alias("terminate-instances")
start_instances = _alias("start-instances")
stop_instances = _alias("stop-instances")
reboot_instances = _alias("reboot-instances")
allocate_address = _alias("allocate-address")
describe_addresses = _alias("describe-addresses")
associate_address = _alias("associate-address")
disassociate_address = _alias("disassociate-address")
release_address = _alias("release-address")
create_volume = _alias("create-volume")
delete_volume = _alias("delete-volume")
describe_volumes = _alias("describe-volumes")
attach_volume = _alias("attach-volume")
detach_volume = _alias("detach-volume")
create_keypair = _alias("create-keypair")
delete_keypair = _alias("delete-keypair")
describe_keypairs = _alias("describe-keypairs")

if __name__ == "__main__":
    sys.exit(main())
