"""The econe client CLI: the Ruby `econe-*` tools as `econe` subcommands, on boto3.

`econe/client_cli.py` holds the entry points; this package the parts: credentials, the
commands, output formatting, and the non-AWS `UploadImage` multipart upload.
"""


def version() -> str:
    """The installed econe version (the checkout's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("econe")
    except PackageNotFoundError:
        return "0.1.0+unknown"
