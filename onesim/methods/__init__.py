"""XML-RPC method implementations; importing this package registers them all."""

from . import image, misc, tmpl, user, vm, vnet  # noqa: F401
